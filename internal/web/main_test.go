package web_test

import (
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
