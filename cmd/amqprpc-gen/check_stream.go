package main

import (
	"go/token"
	"go/types"
)

// A stream method returns one iter.Seq2[T, error] and nothing else: its
// server yields items of type T, each sent to the caller as it comes, and
// an error, which ends the stream. Any iterator among a method's results
// makes the checker hold the method to that form, so that a near miss
// (iter.Seq[T], an error result beside the iterator) is told what a
// stream is rather than that a function cannot cross the wire.

// iterates reports whether any of results is an iterator: one of package
// iter, or a type defined on one.
func iterates(results *types.Tuple) bool {
	for r := range results.Variables() {
		if isIterSeq(r.Type()) || iteratorShaped(r.Type()) {
			return true
		}
	}
	return false
}

func isIterSeq(t types.Type) bool { return isNamed(t, "iter", "Seq") || isNamed(t, "iter", "Seq2") }

// iteratorShaped reports whether t is a function that takes a yield
// function, as iter.Seq and iter.Seq2 are: func(yield func(...) bool).
func iteratorShaped(t types.Type) bool {
	sig, ok := t.Underlying().(*types.Signature)
	if !ok || sig.Params().Len() != 1 || sig.Results().Len() != 0 {
		return false
	}
	yield, ok := sig.Params().At(0).Type().Underlying().(*types.Signature)
	return ok && yield.Results().Len() == 1 && types.Identical(yield.Results().At(0).Type(), types.Typ[types.Bool])
}

// streamResult makes m, a method whose results hold an iterator, a stream
// of the items the iterator yields, or reports why it cannot be one.
func (c *checker) streamResult(m *method, fn *types.Func, results *types.Tuple, fail func(token.Pos, string, ...any)) {
	m.mode = streamMode // so that its directives are checked as a stream's
	if results.Len() != 1 {
		fail(fn.Pos(), "results %s: a stream method returns one iter.Seq2[T, error] and nothing else; the error it yields ends the stream", c.typeString(results))
		return
	}
	r := results.At(0)
	if !isIterSeq(r.Type()) {
		fail(r.Pos(), "result of type %s: a stream is iter.Seq2[T, error] itself, or an alias of it", c.typeString(r.Type()))
		return
	}
	seq := types.Unalias(r.Type()).(*types.Named)
	if isNamed(seq, "iter", "Seq") {
		fail(r.Pos(), "result %s: a stream is iter.Seq2[T, error], whose error ends it", c.typeString(seq))
		return
	}
	item, end := seq.TypeArgs().At(0), seq.TypeArgs().At(1)
	if !isError(end) {
		fail(r.Pos(), "result %s: a stream is iter.Seq2[T, error]; its second type must be error, which ends it", c.typeString(seq))
		return
	}
	if why := c.wireProblem(item, nil); why != "" {
		fail(r.Pos(), "stream item of type %s cannot cross the wire: %s", c.typeString(item), why)
		return
	}
	m.item = &param{wire: "item", typ: c.typeOf(item), goType: c.typeString(item), shape: jsonShape(item), schema: c.schemas.of(item)}
}
