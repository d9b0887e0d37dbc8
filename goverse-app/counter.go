package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/xiaonanln/goverse/goverseapi"
	pb "github.com/xiaonanln/goverse/samples/counter/proto"
	"google.golang.org/protobuf/proto"
)

// Counter is Goverse's counter sample made persistent: its value is saved by ToData (periodically,
// on eviction, on graceful stop) and restored by FromData when the object is activated on a node,
// so a shard move keeps it and a SIGKILL loses at most one persistence interval of increments.
type Counter struct {
	goverseapi.BaseObject

	mu    sync.Mutex
	value int32
}

// OnCreated is required by goverseapi.Object; the state comes from FromData.
func (c *Counter) OnCreated() {}

func (c *Counter) reply() *pb.CounterResponse {
	return &pb.CounterResponse{Name: c.Id(), Value: c.value}
}

// Increment adds req.Amount (which may be negative).
func (c *Counter) Increment(ctx context.Context, req *pb.IncrementRequest) (*pb.CounterResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value += req.GetAmount()
	return c.reply(), nil
}

// Decrement subtracts req.Amount.
func (c *Counter) Decrement(ctx context.Context, req *pb.DecrementRequest) (*pb.CounterResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value -= req.GetAmount()
	return c.reply(), nil
}

// Get returns the current value.
func (c *Counter) Get(ctx context.Context, req *pb.GetRequest) (*pb.CounterResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reply(), nil
}

// Reset sets the value to zero.
func (c *Counter) Reset(ctx context.Context, req *pb.ResetRequest) (*pb.CounterResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value = 0
	return c.reply(), nil
}

// ToData stores the value in a CounterResponse (a message Goverse's build already has, so the app
// needs no generated code of its own). Goverse also calls it on a fresh object to get the type to
// load into.
func (c *Counter) ToData() (proto.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &pb.CounterResponse{Value: c.value}, nil
}

// FromData restores the value; nil means a new object.
func (c *Counter) FromData(data proto.Message) error {
	if data == nil {
		return nil
	}
	state, ok := data.(*pb.CounterResponse)
	if !ok {
		return fmt.Errorf("Counter.FromData: expected *counter.CounterResponse, got %T", data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value = state.GetValue()
	return nil
}
