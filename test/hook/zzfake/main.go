package main

import (
	"context"
	"errors"
	"os"

	"github.com/holdfast-dev/holdfast/engine/api"
)

type h struct{}

func (h) Register(_ context.Context, c api.Container) (*api.Container, error) { return &c, nil }
func (h) Unregister(_ context.Context, id string) error                      { return nil }
func (h) Sync(context.Context, string, []api.Container) ([]api.Container, error) {
	return nil, errors.New("x")
}
func (h) List(context.Context) ([]api.Container, error) { return nil, errors.New("x") }
func (h) Status(context.Context) (*api.Status, error)   { return nil, errors.New("x") }
func (h) Reload(context.Context) error                  { return errors.New("x") }

func main() {
	l, err := api.Listen(os.Args[1])
	if err != nil {
		panic(err)
	}
	(&api.Server{Handler: h{}}).Serve(context.Background(), l)
}
