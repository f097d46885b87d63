package supervisor_test

import (
	"reflect"
	"testing"
	"unicode"

	"github.com/handoff-dev/handoff/supervisor"
)

// TestExportedFieldsHaveExportedTypes: a user can name the type of every
// exported field of the exported structs (Stats.NotifyDropped once was of
// an unexported type).
func TestExportedFieldsHaveExportedTypes(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(path string, typ reflect.Type)
	check = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if seen[typ] {
			return
		}
		seen[typ] = true
		if name := typ.Name(); name != "" && typ.PkgPath() != "" && !unicode.IsUpper(rune(name[0])) {
			t.Errorf("%s has the unexported type %s.%s", path, typ.PkgPath(), name)
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for f := range typ.Fields() {
			if f.IsExported() {
				check(path+"."+f.Name, f.Type)
			}
		}
	}
	for _, v := range []any{supervisor.Stats{}, supervisor.WorkerInfo{}, supervisor.Hooks{},
		supervisor.Spawn{}, supervisor.Command{}, supervisor.NotifyDrops{}} {
		typ := reflect.TypeOf(v)
		check(typ.Name(), typ)
	}
}
