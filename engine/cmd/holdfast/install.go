package main

// The install targets live in their registrars' packages; these files only
// parse flags and call them:
//   install_crio.go       → hook (OCI hooks.d for CRI-O and podman)
//   install_containerd.go → nri-plugin (containerd NRI)
