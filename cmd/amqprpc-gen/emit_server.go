package main

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// genServer emits the server side of svc: the registration function, the
// service description, and per method its argument struct and handler.
func genServer(out *jen.File, svc *service) {
	desc := serviceDesc(svc)
	declare(out, fmt.Sprintf(`%s registers impl to serve the methods of %s
on s, usually a *runtime.Server.`, registerFunc(svc), svc.name),
		jen.Func().Id(registerFunc(svc)).
			Params(jen.Id("s").Qual(runtimePath, "ServiceRegistrar"), jen.Id("impl").Id(svc.name)).
			Block(jen.Id("s").Dot("RegisterService").Call(jen.Op("&").Id(desc), jen.Id("impl"))))

	methods := make([]jen.Code, len(svc.methods))
	for i, m := range svc.methods {
		fields := []jen.Code{jen.Id("Name").Op(":").Lit(m.wire), jen.Id("Handler").Op(":").Id(handlerFunc(svc, m))}
		if !m.hasCtx {
			fields = append(fields, jen.Id("IgnoresContext").Op(":").True())
		}
		switch m.mode {
		case castMode:
			fields = append(fields, jen.Id("Mode").Op(":").Qual(runtimePath, "Cast"))
		case fanoutMode:
			fields = append(fields, jen.Id("Mode").Op(":").Qual(runtimePath, "Fanout"))
		case streamMode:
			fields = append(fields, jen.Id("Mode").Op(":").Qual(runtimePath, "Stream"))
		}
		if m.gather {
			fields = append(fields, jen.Id("Gather").Op(":").True())
		}
		if m.since != "" {
			fields = append(fields, jen.Id("Since").Op(":").Lit(m.since))
		}
		if len(m.params) > 0 {
			fields = append(fields, jen.Id("Params").Op(":").Index().Qual(runtimePath, "FieldDesc").Values(lines(fieldDescs(m.params)...)...))
		}
		results := m.results
		if m.item != nil {
			results = []*param{m.item} // a stream's results describe each item
		}
		if len(results) > 0 {
			fields = append(fields, jen.Id("Results").Op(":").Index().Qual(runtimePath, "FieldDesc").Values(lines(fieldDescs(results)...)...))
		}
		methods[i] = jen.Values(lines(fields...)...)
	}
	fields := []jen.Code{jen.Id("ServiceName").Op(":").Lit(svc.name)}
	if svc.version != "" {
		fields = append(fields, jen.Id("Version").Op(":").Lit(svc.version))
	}
	if svc.namespace != "" {
		fields = append(fields, jen.Id("Namespace").Op(":").Lit(svc.namespace))
	}
	fields = append(fields, jen.Id("Methods").Op(":").Index().Qual(runtimePath, "MethodDesc").Values(lines(methods...)...))
	if len(svc.errors) > 0 {
		errs := make([]jen.Code, len(svc.errors))
		for i, e := range svc.errors {
			errs[i] = errorDesc(e)
		}
		fields = append(fields, jen.Id("Errors").Op(":").Index().Qual(runtimePath, "ErrorDesc").Values(lines(errs...)...))
	}
	if len(svc.types) > 0 {
		types := jen.Dict{}
		for name, s := range svc.types {
			types[jen.Lit(name)] = schemaLit(s, false)
		}
		fields = append(fields, jen.Id("Types").Op(":").Map(jen.String()).Op("*").Qual(runtimePath, "Schema").Values(types))
	}
	declare(out, fmt.Sprintf(`%s describes %s to the amqprpc runtime: its
methods by wire name and the code that calls them.`, desc, svc.name),
		jen.Var().Id(desc).Op("=").Qual(runtimePath, "ServiceDesc").Values(lines(fields...)...))

	for _, m := range svc.methods {
		genArgs(out, svc, m)
		if len(m.results) > 1 {
			genResult(out, svc, m)
		}
		genHandler(out, svc, m)
	}
}

// errorDesc spells the runtime description of a declared error; its wire
// name is its package path and name.
func errorDesc(e errorRef) jen.Code {
	name := jen.Lit(e.path + "." + e.name)
	if !e.typed {
		return jen.Qual(runtimePath, "SentinelError").Call(name, jen.Qual(e.path, e.name))
	}
	t := jen.Qual(e.path, e.name)
	if e.pointer {
		t = jen.Op("*").Add(t)
	}
	return jen.Qual(runtimePath, "TypedError").Types(t).Call(name)
}

// genResult emits the struct whose JSON form is m's results object.
func genResult(out *jen.File, svc *service, m *method) {
	fields := make([]jen.Code, len(m.results))
	for i, r := range m.results {
		fields[i] = jen.Id(r.field).Add(typeCode(r.typ)).Tag(map[string]string{"json": r.wire})
	}
	out.Type().Id(resultType(svc, m)).Struct(fields...)
}

// genArgs emits the struct whose JSON form is m's args object.
func genArgs(out *jen.File, svc *service, m *method) {
	fields := make([]jen.Code, len(m.params))
	for i, p := range m.params {
		fields[i] = jen.Id(p.field).Add(typeCode(p.typ)).Tag(map[string]string{"json": p.wire})
	}
	out.Type().Id(argsType(svc, m)).Struct(fields...)
}

// genHandler emits the function that decodes m's arguments and calls it.
func genHandler(out *jen.File, svc *service, m *method) {
	taken := map[string]bool{svc.name: true}
	impl, ctx, dec := freshName("impl", taken), freshName("ctx", taken), freshName("dec", taken)
	args, err := freshName("args", taken), freshName("err", taken)

	var callArgs []jen.Code
	if m.hasCtx {
		callArgs = append(callArgs, jen.Id(ctx))
	}
	for i, p := range m.params {
		a := jen.Id(args).Dot(p.field)
		if m.variadic && i == len(m.params)-1 {
			a.Op("...")
		}
		callArgs = append(callArgs, a)
	}
	call := jen.Id(impl).Assert(jen.Id(svc.name)).Dot(m.name).Call(callArgs...)

	body := []jen.Code{
		jen.Var().Id(args).Id(argsType(svc, m)),
		jen.If(jen.Id(err).Op(":=").Id(dec).Call(jen.Op("&").Id(args)), jen.Id(err).Op("!=").Nil()).
			Block(jen.Return(jen.Nil(), jen.Id(err))),
	}
	switch n := len(m.results); {
	case m.mode == streamMode:
		body = append(body, jen.Return(jen.Qual(runtimePath, "ItemsOf").Call(call), jen.Nil()))
	case n > 1:
		var vars, fields []jen.Code
		for _, r := range m.results {
			v := freshName("r"+r.field, taken)
			vars = append(vars, jen.Id(v))
			fields = append(fields, jen.Id(r.field).Op(":").Id(v))
		}
		if m.hasErr {
			vars = append(vars, jen.Id(err))
		}
		body = append(body, jen.List(vars...).Op(":=").Add(call))
		if m.hasErr {
			body = append(body, jen.If(jen.Id(err).Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Id(err))))
		}
		body = append(body, jen.Return(jen.Op("&").Id(resultType(svc, m)).Values(fields...), jen.Nil()))
	case n == 1 && m.hasErr:
		body = append(body, jen.Return(call))
	case n == 1:
		body = append(body, jen.Return(call, jen.Nil()))
	case m.hasErr:
		body = append(body, jen.Return(jen.Nil(), call))
	default:
		body = append(body, call, jen.Return(jen.Nil(), jen.Nil()))
	}

	out.Func().Id(handlerFunc(svc, m)).
		Params(jen.Id(impl).Any(), jen.Id(ctx).Qual("context", "Context"), jen.Id(dec).Func().Params(jen.Any()).Error()).
		Params(jen.Any(), jen.Error()).
		Block(body...)
}

// fieldDescs describes params for tools: wire name, Go type, JSON shape.
func fieldDescs(params []*param) []jen.Code {
	descs := make([]jen.Code, len(params))
	for i, p := range params {
		descs[i] = jen.Values(jen.Id("Name").Op(":").Lit(p.wire), jen.Id("GoType").Op(":").Lit(p.goType), jen.Id("JSON").Op(":").Lit(p.shape),
			jen.Id("Schema").Op(":").Add(schemaLit(p.schema, true)))
	}
	return descs
}

// schemaLit spells s as a composite literal of runtime.Schema, &-prefixed
// where the type must be given (full), its type elided where Go allows.
func schemaLit(s *schema, full bool) jen.Code {
	var fields []jen.Code
	str := func(name, v string) {
		if v != "" {
			fields = append(fields, jen.Id(name).Op(":").Lit(v))
		}
	}
	str("Ref", s.Ref)
	str("Type", s.Type)
	str("Format", s.Format)
	str("ContentEncoding", s.ContentEncoding)
	str("Description", s.Description)
	str("Const", s.Const)
	str("Pattern", s.Pattern)
	if s.Items != nil {
		fields = append(fields, jen.Id("Items").Op(":").Add(schemaLit(s.Items, true)))
	}
	if s.Properties != nil {
		props := jen.Dict{}
		for name, p := range s.Properties {
			props[jen.Lit(name)] = schemaLit(p, false)
		}
		fields = append(fields, jen.Id("Properties").Op(":").Map(jen.String()).Op("*").Qual(runtimePath, "Schema").Values(props))
	}
	if s.Required != nil {
		req := make([]jen.Code, len(s.Required))
		for i, r := range s.Required {
			req[i] = jen.Lit(r)
		}
		fields = append(fields, jen.Id("Required").Op(":").Index().String().Values(req...))
	}
	if s.AdditionalProperties != nil {
		fields = append(fields, jen.Id("AdditionalProperties").Op(":").Add(schemaLit(s.AdditionalProperties, true)))
	}
	if s.PropertyNames != nil {
		fields = append(fields, jen.Id("PropertyNames").Op(":").Add(schemaLit(s.PropertyNames, true)))
	}
	for _, of := range []struct {
		name string
		list []*schema
	}{{"OneOf", s.OneOf}, {"AnyOf", s.AnyOf}} {
		if name, list := of.name, of.list; list != nil {
			of := make([]jen.Code, len(list))
			for i, o := range list {
				of[i] = schemaLit(o, false)
			}
			fields = append(fields, jen.Id(name).Op(":").Index().Op("*").Qual(runtimePath, "Schema").Values(of...))
		}
	}
	if full {
		return jen.Op("&").Qual(runtimePath, "Schema").Values(fields...)
	}
	return jen.Values(fields...)
}
