package certauthority

import (
	"encoding/asn1"
	"fmt"
	"math/big"
)

type ecdsaSignature struct{ R, S *big.Int }

func parseECDSASignature(der []byte) (*big.Int, *big.Int, error) {
	var sig ecdsaSignature
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("parse ECDSA signature: %w", err)
	}
	return sig.R, sig.S, nil
}
