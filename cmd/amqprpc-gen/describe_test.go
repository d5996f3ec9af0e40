package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/examples/inventory"
	"github.com/amqprpc/amqprpc/runtime"
)

// The description amqprpc-gen -describe prints is what a server of the
// interface answers describe.Request with: methods, modes, versions,
// wire names, JSON shapes and declared errors, in the same order.
func TestDescribeIsWhatServersSay(t *testing.T) {
	for _, tc := range []struct {
		typ, dir, output string
		register         func(runtime.ServiceRegistrar)
	}{
		{"Calculator", "../../examples/calc", "calc_amqprpc.go", func(r runtime.ServiceRegistrar) { calc.RegisterCalculatorServer(r, new(calc.Machine)) }},
		{"Inventory", "../../examples/inventory", "inventory_amqprpc.go", func(r runtime.ServiceRegistrar) { inventory.RegisterInventoryServer(r, inventory.NewStore(1)) }},
	} {
		var stdout, stderr bytes.Buffer
		if err := run([]string{"-type", tc.typ, "-output", tc.dir + "/" + tc.output, "-describe", tc.dir}, &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v: %s", tc.typ, err, stderr.String())
		}
		if committed, err := os.ReadFile(tc.dir + "/" + strings.TrimSuffix(tc.output, ".go") + ".json"); err != nil || !bytes.Equal(committed, stdout.Bytes()) {
			t.Fatalf("%s: the committed description (-description) is not what -describe prints: %v", tc.typ, err)
		}
		var printed []describe.Service
		if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
			t.Fatalf("%s: the description is not JSON: %v\n%s", tc.typ, err, stdout.String())
		}
		l := runtime.NewLocal("t")
		tc.register(l)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var said describe.Server
		err := l.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "t"}, Method: describe.Request, Args: struct{}{}}, &said)
		cancel()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.MarshalIndent(said.Services, "", "  ")
		got, _ := json.MarshalIndent(printed, "", "  ")
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: amqprpc-gen -describe printed\n%s\nbut a server says\n%s", tc.typ, got, want)
		}
		if tc.typ == "Calculator" && (len(printed[0].Errors) != 1 || printed[0].Errors[0] != "github.com/amqprpc/amqprpc/examples/calc.ErrDivideByZero") {
			t.Fatalf("the calculator's declared errors: %v", printed[0].Errors)
		}
	}
}

// -describe without -output leaves out the code generated before for the
// interfaces, whatever its go:generate line named it (calc_amqprpc.go for
// Calculator, not calculator_amqprpc.go): its names are not taken.
func TestDescribeFindsGeneratedCode(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-type", "Calculator", "-describe", "../../examples/calc"}, &stdout, &stderr); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	committed, err := os.ReadFile("../../examples/calc/calc_amqprpc.json")
	if err != nil || !bytes.Equal(committed, stdout.Bytes()) {
		t.Fatalf("-describe without -output printed\n%s\n(%v)", stdout.String(), err)
	}
	// One of the interfaces of a file generated for several, or all of
	// them in another order.
	for _, types := range []string{"Admin", "Everyone,Admin,Calc"} {
		stdout.Reset()
		if err := run([]string{"-type", types, "-describe", "../../interop/oslo"}, &stdout, &stderr); err != nil {
			t.Fatalf("-type %s: %v: %s", types, err, stderr.String())
		}
	}
	// Interfaces generated into files of their own, described together.
	stdout.Reset()
	if err := run([]string{"-type", "Arith,Fleet", "-describe", "../../internal/testsvc"}, &stdout, &stderr); err != nil {
		t.Fatalf("-type Arith,Fleet: %v: %s", err, stderr.String())
	}
}
