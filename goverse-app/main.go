// Command goverse-app is the Goverse node the harness deploys with --stack goverse.
//
// Goverse has no node binary: a node is an application that embeds the framework and registers
// its object types. This one registers exactly what the harness's workload calls (harness/wire.py,
// harness/workload/runner.py): a persistent Counter (Increment, Decrement, Get, Reset) and a
// persistent Wallet (Deposit, Withdraw, GetBalance) whose deposits the harness sends as Goverse
// reliable calls. Messages are Goverse's own counter and wallet sample messages, so the bytes on
// the wire are the ones a Goverse user's client sends.
//
// Flags: Goverse's node flags (--config, --node-id, ...) plus --persistence-interval, how often
// dirty objects are saved (Goverse's default is 5 minutes; SIGKILL loses what was not saved).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/xiaonanln/goverse/goverseapi"
	"github.com/xiaonanln/goverse/node/serverconfig"
)

func main() {
	// Registered on flag.CommandLine before goverseapi.NewServer() parses it, next to Goverse's
	// own flags; Goverse's --config exclusivity check only looks at its own flags.
	interval := flag.Duration("persistence-interval", 0,
		"how often dirty objects are saved to PostgreSQL (0: Goverse's default, 5m)")
	// What goverseapi.NewServer() does, but a bad configuration ends in one line naming it and exit
	// code 2 instead of a panic, so the last log line (what a harness or an operator sees) says why.
	cfg, err := serverconfig.NewLoader(nil).Load(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "goverse-app: %v\n", err)
		os.Exit(2)
	}
	server, err := goverseapi.NewServerWithConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "goverse-app: %v\n", err)
		os.Exit(1)
	}
	if *interval < 0 {
		fmt.Fprintf(os.Stderr, "--persistence-interval must be >= 0, got %s\n", *interval)
		os.Exit(2)
	}
	if *interval > 0 {
		server.Node.SetPersistenceInterval(*interval)
	}
	goverseapi.RegisterObjectType((*Counter)(nil))
	goverseapi.RegisterObjectType((*Wallet)(nil))
	effective := *interval
	if effective == 0 {
		effective = 5 * time.Minute
	}
	fmt.Printf("goverse-app: Counter and Wallet registered, persistence interval %s\n", effective)
	if err := server.Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "goverse-app: %v\n", err)
		os.Exit(1)
	}
}
