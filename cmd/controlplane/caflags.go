package main

import (
	"github.com/spf13/pflag"

	"github.com/librarymesh/controlplane/certauthority"
)

// caFlags are serve's certificate authority limits.
type caFlags struct {
	plaintextTokens bool
	limits          certauthority.Limits
}

func addCAFlags(f *pflag.FlagSet, c *caFlags) {
	f.BoolVar(&c.plaintextTokens, "ca-plaintext-tokens", false,
		"accept bearer tokens for CreateCertificate on the plaintext port too, where they travel in clear (tests and local trials only; logs a warning)")
	f.Float64Var(&c.limits.IdentityRate, "ca-identity-rate", certauthority.DefaultIdentityRate,
		"CreateCertificate calls per second per identity (0: no limit)")
	f.IntVar(&c.limits.IdentityBurst, "ca-identity-burst", certauthority.DefaultIdentityBurst,
		"CreateCertificate calls one identity may make at once above --ca-identity-rate")
	f.Float64Var(&c.limits.GlobalRate, "ca-global-rate", certauthority.DefaultGlobalRate,
		"CreateCertificate calls per second over all callers, counted before authentication (0: no limit)")
	f.IntVar(&c.limits.GlobalBurst, "ca-global-burst", certauthority.DefaultGlobalBurst,
		"CreateCertificate calls all callers may make at once above --ca-global-rate")
}

// apply sets the flags on a CA config.
func (c caFlags) apply(cfg *certauthority.Config) {
	limits := c.limits
	cfg.PlaintextTokens, cfg.Limits = c.plaintextTokens, &limits
}
