// Command client adds two integers on a Calculator server and prints the
// sum:
//
//	client 2 3
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) != 3 {
		log.Fatal("usage: client V1 V2")
	}
	v1, err1 := strconv.Atoi(os.Args[1])
	v2, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil {
		log.Fatal("client: V1 and V2 must be integers")
	}

	conn, err := runtime.Dial(calc.BrokerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	calculator := calc.NewCalculatorClient(conn, calc.Topic)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sum, err := calculator.Add(ctx, v1, v2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum)
}
