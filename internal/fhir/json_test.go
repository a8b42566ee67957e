package fhir

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzSplitObject holds the fast splitters to encoding/json: on any valid JSON they must see
// the same members and elements, or a crafted bundle could show the importer one resource
// and the store another.
func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":1,"b":[1,{"c":"}"}],"d":"\"]"}`, ` { "k\u00e9" : "v" , "k\u00e9":2 } `,
		`[1, "a\\", {"x":[]}, true, null, -1.5e3]`, `"s"`, `12`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var wantObj map[string]json.RawMessage
		objErr := json.Unmarshal(data, &wantObj)
		gotObj, ok := splitObject(data)
		if got, want := ok, objErr == nil && wantObj != nil; got != want {
			t.Fatalf("splitObject ok = %v, want %v", got, want)
		}
		if ok {
			if got, want := len(gotObj), len(wantObj); got != want {
				t.Fatalf("splitObject: %d members, want %d", got, want)
			}
			for k, v := range wantObj {
				if got, want := string(gotObj[k]), string(bytes.TrimSpace(v)); got != want {
					t.Fatalf("member %q = %s, want %s", k, got, want)
				}
			}
		}
		var wantArr []json.RawMessage
		arrErr := json.Unmarshal(data, &wantArr)
		gotArr, ok := splitArray(data)
		if got, want := ok, arrErr == nil && wantArr != nil; got != want {
			t.Fatalf("splitArray ok = %v, want %v", got, want)
		}
		if ok {
			if got, want := len(gotArr), len(wantArr); got != want {
				t.Fatalf("splitArray: %d elements, want %d", got, want)
			}
			for i, v := range wantArr {
				if got, want := string(gotArr[i]), string(bytes.TrimSpace(v)); got != want {
					t.Fatalf("element %d = %s, want %s", i, got, want)
				}
			}
		}
	})
}
