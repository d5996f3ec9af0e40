package main

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// genClient emits the typed client of svc.
func genClient(out *jen.File, svc *service) {
	name := clientType(svc)
	errorLast := `return an error last, which is a
*runtime.Error when a server reports one.`
	if hasStream(svc) {
		errorLast = `return an error last, or for a
stream an iterator that yields it last; the error is a *runtime.Error
when a server reports one.`
	}
	declare(out, fmt.Sprintf(`%s calls the methods of %s on the servers of one topic.
Its methods take a context first and %s It is safe for concurrent use.`, name, svc.name, errorLast),
		jen.Type().Id(name).Struct(
			jen.Id("inv").Qual(runtimePath, "Invoker"),
			jen.Id("target").Qual(runtimePath, "Target"),
		))

	declare(out, fmt.Sprintf(`%s returns a client that calls the methods of %s
on the servers of topic through inv, usually a *runtime.Client.`, clientCtor(svc), svc.name),
		jen.Func().Id(clientCtor(svc)).
			Params(jen.Id("inv").Qual(runtimePath, "Invoker"), jen.Id("topic").String()).
			Op("*").Id(name).
			Block(jen.Return(jen.Op("&").Id(name).Values(
				jen.Id("inv").Op(":").Id("inv"),
				jen.Id("target").Op(":").Qual(runtimePath, "Target").Values(jen.Id("Topic").Op(":").Id("topic")),
			))))

	if svc.clientImplements {
		declare(out, fmt.Sprintf("%s implements %s.", name, svc.name),
			jen.Var().Id("_").Id(svc.name).Op("=").Parens(jen.Op("*").Id(name)).Parens(jen.Nil()))
	}
	genTargetSetter(out, svc, "ToServer", "name", "Server", `ToServer returns a client that sends every request to the server of the
topic named name alone (see runtime.WithServerName).`)
	if svc.version != "" {
		genTargetSetter(out, svc, "WithVersionCap", "version", "VersionCap", fmt.Sprintf(`WithVersionCap returns a client that sends nothing newer than version
of %s (at most %s): a method added later fails with runtime.ErrVersionCap
instead of reaching servers that may not have it yet.`, svc.name, svc.version))
	}
	for _, m := range svc.methods {
		if m.mode == streamMode {
			genStreamMethod(out, svc, m)
			continue
		}
		genClientMethod(out, svc, m)
		if m.gather {
			genGatherMethod(out, svc, m)
		}
	}
}

// genTargetSetter emits a client method that returns a copy of the client
// with one field of its target set.
func genTargetSetter(out *jen.File, svc *service, method, param, field, text string) {
	declare(out, text,
		jen.Func().Params(jen.Id("c").Op("*").Id(clientType(svc))).Id(method).
			Params(jen.Id(param).String()).Op("*").Id(clientType(svc)).
			Block(
				jen.Id("t").Op(":=").Id("c").Dot("target"),
				jen.Id("t").Dot(field).Op("=").Id(param),
				jen.Return(jen.Op("&").Id(clientType(svc)).Values(jen.Id("inv").Op(":").Id("c").Dot("inv"), jen.Id("target").Op(":").Id("t"))),
			))
}

// clientLocals are the names a client method uses: its parameters, then
// the generated code's own, chosen not to shadow them.
type clientLocals struct {
	taken     map[string]bool
	ctx, recv string
	params    []jen.Code // the method's parameters, context first
}

func newClientLocals(m *method) *clientLocals {
	l := &clientLocals{taken: make(map[string]bool)}
	for _, p := range m.params {
		l.taken[p.name] = true
	}
	l.ctx = m.ctxName
	if l.ctx == "" || l.ctx == "_" {
		l.ctx = freshName("ctx", l.taken)
	} else {
		l.taken[l.ctx] = true
	}
	l.recv = freshName("c", l.taken)
	l.params = []jen.Code{jen.Id(l.ctx).Qual("context", "Context")}
	for i, p := range m.params {
		l.params = append(l.params, jen.Id(p.name).Add(paramType(m, i)))
	}
	return l
}

// request spells the runtime.Request that m's client method sends.
func request(svc *service, m *method, recv string) jen.Code {
	fields := make([]jen.Code, len(m.params))
	for i, p := range m.params {
		fields[i] = jen.Id(p.field).Op(":").Id(p.name)
	}
	elems := []jen.Code{
		jen.Id("Target").Op(":").Id(recv).Dot("target"),
		jen.Id("Service").Op(":").Op("&").Id(serviceDesc(svc)),
		jen.Id("Method").Op(":").Lit(m.wire),
	}
	if m.since != "" && m.since != "1.0" {
		elems = append(elems, jen.Id("Since").Op(":").Lit(m.since))
	}
	switch m.mode {
	case castMode:
		elems = append(elems, jen.Id("Mode").Op(":").Qual(runtimePath, "Cast"))
	case fanoutMode:
		elems = append(elems, jen.Id("Mode").Op(":").Qual(runtimePath, "Fanout"))
	case streamMode:
		elems = append(elems, jen.Id("Mode").Op(":").Qual(runtimePath, "Stream"))
	}
	elems = append(elems, jen.Id("Args").Op(":").Op("&").Id(argsType(svc, m)).Values(fields...))
	return jen.Qual(runtimePath, "Request").Values(lines(elems...)...)
}

// genClientMethod emits the client method that calls m.
func genClientMethod(out *jen.File, svc *service, m *method) {
	l := newClientLocals(m)
	invoke := func(reply jen.Code) *jen.Statement {
		return jen.Id(l.recv).Dot("inv").Dot("Invoke").Call(jen.Id(l.ctx), request(svc, m, l.recv), reply)
	}

	var results, body []jen.Code
	for _, r := range m.results {
		results = append(results, typeCode(r.typ))
	}
	results = append(results, jen.Error())
	switch len(m.results) {
	case 0:
		body = []jen.Code{jen.Return(invoke(jen.Nil()))}
	case 1:
		res, err := freshName("out", l.taken), freshName("err", l.taken)
		body = []jen.Code{
			jen.Var().Id(res).Add(typeCode(m.results[0].typ)),
			jen.Id(err).Op(":=").Add(invoke(jen.Op("&").Id(res))),
			jen.Return(jen.Id(res), jen.Id(err)),
		}
	default:
		res, err := freshName("out", l.taken), freshName("err", l.taken)
		var ret []jen.Code
		for _, r := range m.results {
			ret = append(ret, jen.Id(res).Dot(r.field))
		}
		body = []jen.Code{
			jen.Var().Id(res).Id(resultType(svc, m)),
			jen.Id(err).Op(":=").Add(invoke(jen.Op("&").Id(res))),
			jen.Return(append(ret, jen.Id(err))...),
		}
	}

	text := m.doc
	if text == "" {
		verb := map[mode]string{callMode: "calls %s.%s on a server", castMode: "casts %s.%s to a server", fanoutMode: "casts %s.%s to every server"}[m.mode]
		text = fmt.Sprintf("%s "+verb+" of the client's topic.", m.name, svc.name, m.name)
	}
	declare(out, text, jen.Func().Params(jen.Id(l.recv).Op("*").Id(clientType(svc))).Id(m.name).
		Params(l.params...).Params(results...).Block(body...))
}

// genGatherMethod emits Gather<Method>, which calls m on every server.
func genGatherMethod(out *jen.File, svc *service, m *method) {
	l := newClientLocals(m)
	want := freshName("want", l.taken)
	params := append([]jen.Code{l.params[0], jen.Id(want).Int()}, l.params[1:]...)
	value := jen.Struct()
	if len(m.results) == 1 {
		value = jen.Add(typeCode(m.results[0].typ))
	}
	declare(out, fmt.Sprintf(`Gather%s calls %s.%s on every server of the client's topic and
returns their replies, each with the server's name and its result or
error, once want of them have come or, for want 0, when ctx ends; see
runtime.Gather.`, m.name, svc.name, m.name),
		jen.Func().Params(jen.Id(l.recv).Op("*").Id(clientType(svc))).Id("Gather"+m.name).
			Params(params...).
			Params(jen.Index().Qual(runtimePath, "Reply").Types(value), jen.Error()).
			Block(jen.Return(jen.Qual(runtimePath, "Gather").Types(value).Call(
				jen.Id(l.ctx), jen.Id(l.recv).Dot("inv"), request(svc, m, l.recv), jen.Id(want)))))
}

// genStreamMethod emits the client method of m, a stream: it returns the
// items as an iterator, which sends the request when ranged over.
func genStreamMethod(out *jen.File, svc *service, m *method) {
	l := newClientLocals(m)
	item := typeCode(m.item.typ)
	text := m.doc
	if text == "" {
		text = fmt.Sprintf(`%s streams %s.%s from a server of the client's topic:
ranging over it sends the request; breaking out of the loop stops the server.`, m.name, svc.name, m.name)
	}
	declare(out, text, jen.Func().Params(jen.Id(l.recv).Op("*").Id(clientType(svc))).Id(m.name).
		Params(l.params...).Qual("iter", "Seq2").Types(item, jen.Error()).
		Block(jen.Return(jen.Qual(runtimePath, "StreamOf").Types(item).Call(
			jen.Id(l.ctx), jen.Id(l.recv).Dot("inv"), request(svc, m, l.recv)))))
}

// hasStream reports whether any method of svc is a stream.
func hasStream(svc *service) bool {
	for _, m := range svc.methods {
		if m.mode == streamMode {
			return true
		}
	}
	return false
}
