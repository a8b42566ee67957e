package phr_test

import (
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestPrivacySettingsAllows(t *testing.T) {
	all := func(m map[string]bool, keys []string) map[string]bool {
		out := map[string]bool{}
		for _, k := range keys {
			out[k] = m[k]
		}
		return out
	}
	granted := all(map[string]bool{phr.ConsentAssistant: true, phr.ConsentResearch: true, phr.ConsentProductEmails: true}, phr.ConsentPurposes)
	none := all(nil, phr.ObjectionPurposes)
	for _, tc := range []struct {
		name string
		s    phr.PrivacySettings
		want map[string]bool
	}{
		{"nothing chosen: only what needs no consent", phr.PrivacySettings{Consents: all(nil, phr.ConsentPurposes), Objections: none},
			map[string]bool{phr.ProcessAnalytics: true, phr.ProcessThirdPartyExport: true}},
		{"everything granted", phr.PrivacySettings{Consents: granted, Objections: none},
			map[string]bool{phr.ProcessAssistant: true, phr.ProcessResearch: true, phr.ProcessProductEmails: true,
				phr.ProcessAnalytics: true, phr.ProcessThirdPartyExport: true}},
		{"restricted: storage only", phr.PrivacySettings{Restricted: true, Consents: granted, Objections: none}, map[string]bool{}},
		{"objections stop their purpose", phr.PrivacySettings{Consents: granted, Objections: all(map[string]bool{
			phr.ObjectionResearch: true, phr.ObjectionMarketing: true, phr.ObjectionAnalytics: true, phr.ObjectionThirdPartyExport: true}, phr.ObjectionPurposes)},
			map[string]bool{phr.ProcessAssistant: true}},
		{"do not sell stops sharing", phr.PrivacySettings{DoNotSell: true, Consents: granted, Objections: none},
			map[string]bool{phr.ProcessAssistant: true, phr.ProcessResearch: true, phr.ProcessProductEmails: true, phr.ProcessAnalytics: true}},
	} {
		for _, kind := range append(phr.Processings, "selling") {
			if got := tc.s.Allows(kind); got != tc.want[kind] {
				t.Errorf("%s: Allows(%s) = %v, want %v", tc.name, kind, got, tc.want[kind])
			}
		}
	}
}
