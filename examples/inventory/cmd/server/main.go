// Command server serves the example Inventory, a Store of 4,000 made-up
// items on shelves A to D, until it is interrupted, then shuts down
// gracefully.
//
//	server [-url URL] [-topic TOPIC]
//
// It logs how each stream ended to standard error: how many items List
// yielded, and why it stopped when its caller did not read them all.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/amqprpc/amqprpc/examples/inventory"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	url := flag.String("url", inventory.BrokerURL(), "the broker's URL ($AMQP_URL, or a RabbitMQ on this machine)")
	topic := flag.String("topic", inventory.Topic, "the topic to serve")
	flag.Parse()

	srv := runtime.NewServer(*url, *topic, runtime.WithStreamServerInterceptors(logStreams))
	inventory.RegisterInventoryServer(srv, inventory.NewStore(1000))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()

	if err := srv.Serve(); !errors.Is(err, runtime.ErrServerClosed) {
		log.Fatal(err)
	}
}

// logStreams logs how each stream ends: after its last item, with an
// error, or cut short when its caller stops reading (the runtime then
// stops ranging over the method's items, and cancels ctx with the reason).
func logStreams(ctx context.Context, info *runtime.ServerInfo, next runtime.StreamHandler) (runtime.Items, error) {
	items, err := next(ctx)
	if err != nil {
		log.Printf("stream %s: refused: %v", info.Method, err)
		return nil, err
	}
	return func(yield func(any, error) bool) {
		n := 0
		for item, err := range items {
			if more := yield(item, err); more && err == nil {
				n++
				continue
			}
			if ctx.Err() != nil { // the caller stopped reading, or went away
				log.Printf("stream %s: stopped after %d items: %v", info.Method, n, context.Cause(ctx))
			} else {
				log.Printf("stream %s: %d items, then: %v", info.Method, n, err)
			}
			return
		}
		log.Printf("stream %s: all %d items", info.Method, n)
	}, nil
}
