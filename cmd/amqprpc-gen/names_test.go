package main

import "testing"

func TestWireName(t *testing.T) {
	for in, want := range map[string]string{
		"Add":                 "add",
		"v1":                  "v1",
		"V2":                  "v2",
		"instanceID":          "instance_id",
		"InstanceID":          "instance_id",
		"ID":                  "id",
		"HTTPServer":          "http_server",
		"GetHTTPResponseCode": "get_http_response_code",
		"userID2":             "user_id2",
		"ipv4Addr":            "ipv4_addr",
		"listAPIs":            "list_apis",
		"APIsList":            "apis_list",
		"already_snake":       "already_snake",
		"Mixed_Case":          "mixed_case",
		"x":                   "x",
		"X":                   "x",
		"ÉtéFête":             "été_fête",
	} {
		if got := wireName(in); got != want {
			t.Errorf("wireName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExportedName(t *testing.T) {
	for in, want := range map[string]string{
		"v1":  "V1",
		"V1":  "V1",
		"_x":  "X_x",
		"été": "Été",
		"名前":  "X名前",
	} {
		if got := exportedName(in); got != want {
			t.Errorf("exportedName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFreshName(t *testing.T) {
	taken := map[string]bool{"c": true, "c_": true}
	if got := freshName("c", taken); got != "c__" {
		t.Errorf("freshName(c) = %q, want c__", got)
	}
	if got := freshName("ctx", taken); got != "ctx" {
		t.Errorf("freshName(ctx) = %q, want ctx", got)
	}
	if got := freshName("ctx", taken); got != "ctx_" {
		t.Errorf("second freshName(ctx) = %q, want ctx_", got)
	}
}
