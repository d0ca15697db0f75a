/* The floor for any OCI hook: read the state from stdin and exit. The hook
 * benchmark builds it static, beside an empty static Go hook. */
#include <unistd.h>

int main(void)
{
	char buf[4096];

	while (read(0, buf, sizeof buf) > 0)
		;
	return 0;
}
