// Command server serves the example Calculator on the topic "calc" until it
// is interrupted, then shuts down gracefully.
package main

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	srv := runtime.NewServer(calc.BrokerURL(), calc.Topic)
	calc.RegisterCalculatorServer(srv, calc.Adder{})

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
