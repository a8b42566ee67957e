// Package auth provides VitalNexa's credentials: the password policy, the breached-password
// check, the peppered bcrypt hasher with its bounded worker pool, signed access tokens,
// opaque random tokens (and the derived successors of refresh tokens), TOTP second factors
// and recovery codes.
//
// Nothing in this package logs, and no error it returns carries a password, a token, a hash
// or key material: errors meant for clients are *phr.Error with a fixed, safe message, and
// configuration errors name only the option that is wrong.
package auth
