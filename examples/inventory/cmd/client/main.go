// Command client asks the example Inventory server of the topic
// "inventory".
//
//	client list [-shelf S] [-min Q] [-limit N]   stream: prints the items as they come
//	client count [-shelf S] [-min Q]             call: prints how many items match
//
// -shelf keeps the items of one shelf (A to D), -min those of which there
// are at least Q. -limit N stops reading after N items: breaking out of
// the loop over the stream stops the server too. A shelf the server does
// not have ends a stream, or fails a call, with inventory.ErrNoShelf.
//
// Flags before the command: -url URL (default $AMQP_URL, or a RabbitMQ
// on this machine) and -topic TOPIC.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/amqprpc/amqprpc/examples/inventory"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	log.SetFlags(0)
	url := flag.String("url", inventory.BrokerURL(), "the broker's URL ($AMQP_URL, or a RabbitMQ on this machine)")
	topic := flag.String("topic", inventory.Topic, "the topic of the servers to ask")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: client [-url URL] [-topic TOPIC] list [-shelf S] [-min Q] [-limit N] | count [-shelf S] [-min Q]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*url, *topic, flag.Arg(0), flag.Args()[1:]); err != nil {
		log.Fatal(err)
	}
}

func run(url, topic, cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var f inventory.Filter
	fs.StringVar(&f.Shelf, "shelf", "", "the shelf to look on (default: every shelf)")
	fs.IntVar(&f.MinQty, "min", 0, "leave out the items of which there are fewer")
	limit := 0
	if cmd == "list" {
		fs.IntVar(&limit, "limit", 0, "stop after this many items (default: read them all)")
	}
	fs.Parse(args)

	conn, err := runtime.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := inventory.NewInventoryClient(conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	switch cmd {
	case "list":
		return list(ctx, c, f, limit)
	case "count":
		n, err := c.Count(ctx, f)
		if errors.Is(err, inventory.ErrNoShelf) { // the server's error, matched here
			fmt.Printf("count: %v\n", err)
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Println(n)
		return nil
	}
	return fmt.Errorf("client: no command %q; see client -h", cmd)
}

// list prints the items of f as they come, and stops after limit of them
// when limit is above 0.
func list(ctx context.Context, c *inventory.InventoryClient, f inventory.Filter, limit int) error {
	n := 0
	for it, err := range c.List(ctx, f) { // ranging sends the request
		if errors.Is(err, inventory.ErrNoShelf) { // the server's error, which ended the stream
			fmt.Printf("list: %v\n", err)
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Printf("%s  %-12s %3d\n", it.SKU, it.Name, it.Qty)
		n++
		if n == limit {
			fmt.Printf("-- stopped after %d items\n", n)
			return nil // leaving the loop ends the stream: the server stops
		}
	}
	fmt.Printf("-- %d items\n", n)
	return nil
}
