package certauthority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// bootstrapIssuer marks tokens this CA issued (the JWT "iss" claim).
const bootstrapIssuer = "controlplane-ca"

// BootstrapClaims are the claims of a bootstrap token.
type BootstrapClaims struct {
	Issuer         string `json:"iss"`
	ID             string `json:"jti"`
	Namespace      string `json:"ns"`
	ServiceAccount string `json:"sa"`
	IssuedAt       int64  `json:"iat"`
	Expiry         int64  `json:"exp"`
	SingleUse      bool   `json:"single_use,omitempty"`
}

type jwsHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
}

var b64 = base64.RawURLEncoding

// IssueBootstrapToken returns a compact JWS (signed with the CA's signing key: ES256,
// ES384 or RS256) that proves ns/sa to this CA until ttl has passed. A single-use token is
// refused after its first successful use, also across restarts (see UsedTokenStore).
func (ca *CA) IssueBootstrapToken(ns, sa string, ttl time.Duration, singleUse bool) (string, error) {
	id := Identity{Namespace: ns, ServiceAccount: sa}
	if err := id.validate(); err != nil {
		return "", fmt.Errorf("bootstrap token: %w", err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("bootstrap token: ttl %s must be positive", ttl)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("bootstrap token id: %w", err)
	}
	now := ca.cfg.Now()
	claims := BootstrapClaims{Issuer: bootstrapIssuer, ID: hex.EncodeToString(jti), Namespace: ns,
		ServiceAccount: sa, IssuedAt: now.Unix(), Expiry: now.Add(ttl).Unix(), SingleUse: singleUse}
	return signJWS(ca.trust().signer.key, claims)
}

func signJWS(key crypto.Signer, claims BootstrapClaims) (string, error) {
	alg, hash, err := jwsAlgorithm(key.Public())
	if err != nil {
		return "", err
	}
	header, _ := json.Marshal(jwsHeader{Alg: alg, Typ: "JWT"}) // plain structs always marshal
	payload, _ := json.Marshal(claims)
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := hashOf(hash, signingInput)
	sig, err := key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return "", fmt.Errorf("sign bootstrap token: %w", err)
	}
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		if sig, err = ecdsaASN1ToRaw(sig, k.Curve); err != nil {
			return "", err
		}
	}
	return signingInput + "." + b64.EncodeToString(sig), nil
}

func jwsAlgorithm(pub crypto.PublicKey) (string, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", crypto.SHA256, nil
		case elliptic.P384():
			return "ES384", crypto.SHA384, nil
		}
	case *rsa.PublicKey:
		return "RS256", crypto.SHA256, nil
	}
	return "", 0, fmt.Errorf("bootstrap tokens: CA key type %T is not supported", pub)
}

func hashOf(h crypto.Hash, s string) []byte {
	if h == crypto.SHA384 {
		d := sha512.Sum384([]byte(s))
		return d[:]
	}
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func ecdsaASN1ToRaw(sig []byte, curve elliptic.Curve) ([]byte, error) {
	r, s, err := parseECDSASignature(sig)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}

// looksLikeBootstrapToken reports whether token is a JWT whose issuer is this CA, without
// checking its signature; other bearer tokens go to Kubernetes TokenReview.
func looksLikeBootstrapToken(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c BootstrapClaims
	return json.Unmarshal(payload, &c) == nil && c.Issuer == bootstrapIssuer
}

// verifyBootstrapToken checks the signature with the CA's signing key, then the expiry.
func (ca *CA) verifyBootstrapToken(token string) (BootstrapClaims, error) {
	return ca.verifyBootstrapTokenAt(ca.trust(), ca.cfg.Now(), token)
}

// verifyBootstrapTokenAt is verifyBootstrapToken under t at now.
func (ca *CA) verifyBootstrapTokenAt(t *trust, now time.Time, token string) (BootstrapClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return BootstrapClaims{}, unauthenticated(ReasonBadToken, "bootstrap token is malformed")
	}
	var sigErr error
	for _, a := range t.verifiers() {
		if sigErr = verifyJWS(a.cert.PublicKey, parts); sigErr == nil {
			break
		}
	}
	if sigErr != nil {
		return BootstrapClaims{}, unauthenticated(ReasonBadToken, "bootstrap token signature is invalid: %v", sigErr)
	}
	payload, err := b64.DecodeString(parts[1])
	var c BootstrapClaims
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err != nil || c.Issuer != bootstrapIssuer || c.ID == "" {
		return BootstrapClaims{}, unauthenticated(ReasonBadToken, "bootstrap token claims are malformed")
	}
	if exp := time.Unix(c.Expiry, 0); !now.Before(exp) {
		return BootstrapClaims{}, unauthenticated(ReasonExpiredToken, "bootstrap token %s expired at %s", c.ID, exp.UTC().Format(time.RFC3339))
	}
	return c, nil
}

func verifyJWS(pub crypto.PublicKey, parts []string) error {
	alg, hash, err := jwsAlgorithm(pub)
	if err != nil {
		return err
	}
	headerJSON, err := b64.DecodeString(parts[0])
	var h jwsHeader
	if err == nil {
		err = json.Unmarshal(headerJSON, &h)
	}
	if err != nil || h.Alg != alg {
		return fmt.Errorf("header must name algorithm %s", alg)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return errors.New("signature is not base64url")
	}
	digest := hashOf(hash, parts[0]+"."+parts[1])
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return errors.New("signature has the wrong length")
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return errors.New("not signed by this CA")
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(k, hash, digest, sig) != nil {
			return errors.New("not signed by this CA")
		}
	}
	return nil
}
