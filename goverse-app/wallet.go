package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/xiaonanln/goverse/goverseapi"
	pb "github.com/xiaonanln/goverse/samples/wallet/proto"
	"google.golang.org/protobuf/proto"
)

// Wallet is Goverse's wallet sample made persistent. Deposits arrive as reliable calls
// (ReliableCallObject, deduplicated by call_id in PostgreSQL); Goverse saves the object after each
// reliable call, which only makes the balance durable because ToData/FromData exist here.
type Wallet struct {
	goverseapi.BaseObject

	mu      sync.Mutex
	balance int64
}

// OnCreated is required by goverseapi.Object; the state comes from FromData.
func (w *Wallet) OnCreated() {}

func (w *Wallet) reply(ok bool, reason string) *pb.WalletResponse {
	return &pb.WalletResponse{WalletId: w.Id(), Balance: w.balance, Ok: ok, Reason: reason}
}

// Deposit credits a positive amount.
func (w *Wallet) Deposit(ctx context.Context, req *pb.DepositRequest) (*pb.WalletResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if req.GetAmount() <= 0 {
		return w.reply(false, "amount must be positive"), nil
	}
	w.balance += req.GetAmount()
	return w.reply(true, ""), nil
}

// Withdraw debits a positive amount if the balance covers it.
func (w *Wallet) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (*pb.WalletResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if req.GetAmount() <= 0 {
		return w.reply(false, "amount must be positive"), nil
	}
	if w.balance < req.GetAmount() {
		return w.reply(false, "insufficient funds"), nil
	}
	w.balance -= req.GetAmount()
	return w.reply(true, ""), nil
}

// GetBalance returns the balance.
func (w *Wallet) GetBalance(ctx context.Context, req *pb.GetBalanceRequest) (*pb.WalletResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reply(true, ""), nil
}

// ToData stores the balance in a WalletResponse (no generated code of the app's own needed).
func (w *Wallet) ToData() (proto.Message, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return &pb.WalletResponse{Balance: w.balance}, nil
}

// FromData restores the balance; nil means a new wallet.
func (w *Wallet) FromData(data proto.Message) error {
	if data == nil {
		return nil
	}
	state, ok := data.(*pb.WalletResponse)
	if !ok {
		return fmt.Errorf("Wallet.FromData: expected *wallet.WalletResponse, got %T", data)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.balance = state.GetBalance()
	return nil
}
