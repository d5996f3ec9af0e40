// Command client calls the example Calculator servers of the topic "calc".
//
//	client V1 V2           add: prints V1 + V2
//	client div A B         prints A / B, or says that B is zero
//	client store V         cast: adds V to the memory of one server
//	client clear           fanout: clears the memory of every server
//	client memory          gather: prints the memory of every server
//
// Flags: -server NAME sends to that server alone; -cap VERSION sends
// nothing newer than that version of Calculator; -trace prints a line per
// span of OpenTelemetry tracing, and the metrics at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/examples/calc/cmd/internal/demotrace"
	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	log.SetFlags(0)
	server := flag.String("server", "", "send to the server of this name alone")
	versionCap := flag.String("cap", "", "send nothing newer than this version of Calculator")
	tracing := flag.Bool("trace", false, "print each span of OpenTelemetry tracing, and the metrics at the end")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: client [-server NAME] [-cap VERSION] V1 V2 | div A B | store V | clear | memory")
		flag.PrintDefaults()
	}
	flag.Parse()
	var opts []runtime.ClientOption
	if *tracing {
		tp, traced := demotrace.Provider(os.Stdout)
		defer tp.Shutdown(context.Background())
		measured, printMetrics := demotrace.Meter(os.Stdout)
		defer printMetrics()
		opts = append(opts, runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor(traced, measured)))
	}
	if err := run(flag.Args(), *server, *versionCap, opts); err != nil {
		log.Fatal(err)
	}
}

func run(args []string, server, versionCap string, opts []runtime.ClientOption) error {
	if _, err := atoi(args); err == nil && len(args) == 2 { // client V1 V2
		args = append([]string{"add"}, args...)
	}
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ints, err := atoi(args[1:])
	if err != nil {
		return err
	}

	conn, err := runtime.Dial(calc.BrokerURL(), opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := calc.NewCalculatorClient(conn, calc.Topic)
	if server != "" {
		c = c.ToServer(server)
	}
	if versionCap != "" {
		c = c.WithVersionCap(versionCap)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	switch {
	case args[0] == "add" && len(ints) == 2:
		sum, err := c.Add(ctx, ints[0], ints[1])
		if err != nil {
			return err
		}
		fmt.Println(sum)
	case args[0] == "div" && len(ints) == 2:
		q, err := c.Div(ctx, ints[0], ints[1])
		if errors.Is(err, calc.ErrDivideByZero) { // the server's error, matched here
			fmt.Printf("%d / %d: the divisor is zero\n", ints[0], ints[1])
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Println(q)
	case args[0] == "store" && len(ints) == 1:
		return c.Store(ctx, ints[0])
	case args[0] == "clear" && len(ints) == 0:
		return c.Clear(ctx)
	case args[0] == "memory" && len(ints) == 0:
		gatherCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		replies, err := c.GatherMemory(gatherCtx, 0) // every server that answers within a second
		if err != nil {
			return err
		}
		slices.SortFunc(replies, func(a, b runtime.Reply[int]) int { return strings.Compare(a.Server, b.Server) })
		for _, r := range replies {
			if r.Err != nil {
				fmt.Printf("%s: %v\n", r.Server, r.Err)
			} else {
				fmt.Printf("%s: %d\n", r.Server, r.Value)
			}
		}
	default:
		return fmt.Errorf("client: cannot %s %v; see client -h", args[0], ints)
	}
	return nil
}

func atoi(args []string) ([]int, error) {
	ints := make([]int, len(args))
	for i, a := range args {
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("client: %q is not an integer", a)
		}
		ints[i] = n
	}
	return ints, nil
}
