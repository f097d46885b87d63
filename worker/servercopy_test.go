package worker

import (
	"context"
	"net/http"
	"reflect"
	"testing"
)

// TestServerCopies: the servers ServeAndDrain builds from the caller's
// (servercopy.go) carry every exported field of http.Server but those they
// replace or leave out on purpose, listed here. It fails the day Go adds a
// field to http.Server: carry it in copyServer and h2Server, or list it
// here with the reason.
func TestServerCopies(t *testing.T) {
	srv := &http.Server{}
	fields := fill(t, srv)

	inner := copyServer(srv, nil)
	// TLSConfig: ServeAndDrain's own, with WithTLSFiles's certificate and
	// ALPN's protocols.
	compare(t, "copyServer", srv, inner, fields, "TLSConfig")

	d := &drainer{srv: srv}
	hs := d.h2Server(newH2Conn(nil, nil), http.NotFoundHandler(), context.Background())
	compare(t, "h2Server", srv, hs, fields,
		"Handler", "ConnState", "ConnContext", "Protocols", // the connection's own
		"ReadHeaderTimeout",         // bounds the client preface
		"Addr",                      // it has no listener
		"TLSConfig", "TLSNextProto", // TLS is done: it serves h2c
		"BaseContext", // ConnContext gives the whole context
	)
}

// fill sets every exported field of srv to a value that is not zero, and
// returns their names. It fails on a field of a kind it cannot fill.
func fill(t *testing.T, srv *http.Server) []string {
	t.Helper()
	v := reflect.ValueOf(srv).Elem()
	var names []string
	for i := range v.NumField() {
		f, ft := v.Field(i), v.Type().Field(i)
		if !ft.IsExported() {
			continue
		}
		names = append(names, ft.Name)
		switch {
		case ft.Type == reflect.TypeFor[http.Handler]():
			f.Set(reflect.ValueOf(http.NotFoundHandler()))
		case ft.Type.Kind() == reflect.Bool:
			f.SetBool(true)
		case ft.Type.Kind() == reflect.Int || ft.Type.Kind() == reflect.Int64:
			f.SetInt(7)
		case ft.Type.Kind() == reflect.String:
			f.SetString("x")
		case ft.Type.Kind() == reflect.Pointer:
			f.Set(reflect.New(ft.Type.Elem()))
		case ft.Type.Kind() == reflect.Map:
			f.Set(reflect.MakeMap(ft.Type))
		case ft.Type.Kind() == reflect.Func:
			f.Set(reflect.MakeFunc(ft.Type, func([]reflect.Value) []reflect.Value { return nil }))
		default:
			t.Fatalf("http.Server.%s (%s): a kind of field this test cannot fill; is it carried by servercopy.go?", ft.Name, ft.Type)
		}
	}
	return names
}

// compare fails t for each of fields that got does not carry from srv, except
// those in replaced.
func compare(t *testing.T, name string, srv, got *http.Server, fields []string, replaced ...string) {
	t.Helper()
	skip := make(map[string]bool)
	for _, f := range replaced {
		skip[f] = true
	}
	want, have := reflect.ValueOf(srv).Elem(), reflect.ValueOf(got).Elem()
	for _, f := range fields {
		if skip[f] {
			continue
		}
		w, h := want.FieldByName(f), have.FieldByName(f)
		if w.Kind() == reflect.Interface {
			if h.IsNil() {
				t.Errorf("%s does not carry http.Server.%s: carry it, or list it in TestServerCopies with the reason", name, f)
				continue
			}
			w, h = w.Elem(), h.Elem()
		}
		var same bool
		switch w.Kind() {
		case reflect.Func, reflect.Map, reflect.Pointer:
			same = !h.IsNil() && h.Pointer() == w.Pointer()
		default:
			same = reflect.DeepEqual(w.Interface(), h.Interface())
		}
		if !same {
			t.Errorf("%s does not carry http.Server.%s: carry it, or list it in TestServerCopies with the reason", name, f)
		}
	}
}
