package main

import (
	"go/ast"
	"go/token"
	"strings"
)

// Directives are comment lines of the form //amqprpc:name [args], in the doc
// comment of an interface or of one of its methods:
//
//	//amqprpc:version 1.2          interface: its version
//	//amqprpc:errors ErrX *TypeErr interface: errors whose identity crosses the wire
//	//amqprpc:namespace admin      interface: its namespace (oslo.messaging's Target.namespace)
//	//amqprpc:cast                 method: send, wait for the broker, not for a reply
//	//amqprpc:fanout               method: a cast to every server of the topic
//	//amqprpc:gather               method: also generate Gather<Method>
//	//amqprpc:name wire_name       method: its name on the wire
//	//amqprpc:since 1.1            method: the interface version that added it
//
// A stream method (one that returns iter.Seq2[T, error]) takes name and
// since, but not cast, fanout or gather: it sends many items back to the
// one caller that asked.

const directivePrefix = "//amqprpc:"

// directive is one directive line.
type directive struct {
	pos  token.Pos
	name string   // what follows amqprpc:
	args []string // the words after it
}

// directives returns the directives in a doc comment.
func directives(doc *ast.CommentGroup) []directive {
	if doc == nil {
		return nil
	}
	var ds []directive
	for _, c := range doc.List {
		text, ok := strings.CutPrefix(c.Text, directivePrefix)
		if !ok {
			continue
		}
		words := strings.Fields(text)
		if len(words) == 0 {
			words = []string{""}
		}
		ds = append(ds, directive{pos: c.Pos(), name: words[0], args: words[1:]})
	}
	return ds
}

// comments maps the position of the name of every interface type and of
// every method declared in an interface type in files to its doc comment.
func comments(files []*ast.File) map[token.Pos]*ast.CommentGroup {
	docs := make(map[token.Pos]*ast.CommentGroup)
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GenDecl:
				for _, spec := range n.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok {
						continue
					}
					doc := ts.Doc
					if doc == nil && len(n.Specs) == 1 {
						doc = n.Doc
					}
					if doc != nil {
						docs[ts.Name.Pos()] = doc
					}
				}
			case *ast.InterfaceType:
				for _, fld := range n.Methods.List {
					if len(fld.Names) == 1 && fld.Doc != nil {
						docs[fld.Names[0].Pos()] = fld.Doc
					}
				}
			}
			return true
		})
	}
	return docs
}
