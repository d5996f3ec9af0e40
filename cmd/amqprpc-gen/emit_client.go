package main

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// genClient emits the typed client of svc.
func genClient(out *jen.File, svc *service) {
	name := clientType(svc)
	declare(out, fmt.Sprintf(`%s calls the methods of %s on the servers of one topic.
Its methods take a context first and return an error last, which is a
*runtime.Error when a server reports one. It is safe for concurrent use.`, name, svc.name),
		jen.Type().Id(name).Struct(
			jen.Id("inv").Qual(runtimePath, "Invoker"),
			jen.Id("topic").String(),
		))

	declare(out, fmt.Sprintf(`%s returns a client that calls the methods of %s
on the servers of topic through inv, usually a *runtime.Client.`, clientCtor(svc), svc.name),
		jen.Func().Id(clientCtor(svc)).
			Params(jen.Id("inv").Qual(runtimePath, "Invoker"), jen.Id("topic").String()).
			Op("*").Id(name).
			Block(jen.Return(jen.Op("&").Id(name).Values(jen.Id("inv").Op(":").Id("inv"), jen.Id("topic").Op(":").Id("topic")))))

	if svc.clientImplements {
		declare(out, fmt.Sprintf("%s implements %s.", name, svc.name),
			jen.Var().Id("_").Id(svc.name).Op("=").Parens(jen.Op("*").Id(name)).Parens(jen.Nil()))
	}
	for _, m := range svc.methods {
		genClientMethod(out, svc, m)
	}
}

// genClientMethod emits the client method that calls m.
func genClientMethod(out *jen.File, svc *service, m *method) {
	taken := make(map[string]bool)
	for _, p := range m.params {
		taken[p.name] = true
	}
	ctx := m.ctxName
	if ctx == "" || ctx == "_" {
		ctx = freshName("ctx", taken)
	} else {
		taken[ctx] = true
	}
	recv := freshName("c", taken)

	params := []jen.Code{jen.Id(ctx).Qual("context", "Context")}
	fields := make([]jen.Code, len(m.params))
	for i, p := range m.params {
		params = append(params, jen.Id(p.name).Add(paramType(m, i)))
		fields[i] = jen.Id(p.field).Op(":").Id(p.name)
	}
	args := jen.Op("&").Id(argsType(svc, m)).Values(fields...)
	invoke := func(reply jen.Code) *jen.Statement {
		return jen.Id(recv).Dot("inv").Dot("Invoke").Call(jen.Id(ctx), jen.Id(recv).Dot("topic"), jen.Lit(m.wire), args, reply)
	}

	var results, body []jen.Code
	if m.result != nil {
		res, err := freshName("out", taken), freshName("err", taken)
		results = []jen.Code{typeCode(m.result), jen.Error()}
		body = []jen.Code{
			jen.Var().Id(res).Add(typeCode(m.result)),
			jen.Id(err).Op(":=").Add(invoke(jen.Op("&").Id(res))),
			jen.Return(jen.Id(res), jen.Id(err)),
		}
	} else {
		results = []jen.Code{jen.Error()}
		body = []jen.Code{jen.Return(invoke(jen.Nil()))}
	}

	text := m.doc
	if text == "" {
		text = fmt.Sprintf("%s calls %s.%s on a server of the client's topic.", m.name, svc.name, m.name)
	}
	declare(out, text, jen.Func().Params(jen.Id(recv).Op("*").Id(clientType(svc))).Id(m.name).
		Params(params...).Params(results...).Block(body...))
}
