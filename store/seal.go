package store

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KeySize is the length in bytes of a sealing key (AES-256).
const KeySize = 32

// recordFormat is the value of the "v" field of the record values this
// package writes.
const recordFormat = 1

// Field names bound into the additional data of a sealed field.
const (
	fieldAccessToken  = "access_token"
	fieldRefreshToken = "refresh_token"
)

// storedRecord is the JSON value stored under a profile name. The profile
// name itself is the bbolt key.
type storedRecord struct {
	Format       int       `json:"v"`
	TokenType    string    `json:"token_type"`
	AccessToken  []byte    `json:"access_token"`
	RefreshToken []byte    `json:"refresh_token,omitempty"`
	Scope        string    `json:"scope"`
	IssuedAt     time.Time `json:"issued_at"`
	Expiry       time.Time `json:"expiry"`
	Fingerprint  string    `json:"fingerprint"`
}

// sealer seals and opens record values with one key.
type sealer struct {
	aead cipher.AEAD
}

// newSealer returns a sealer for key, which must be KeySize bytes.
func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealing key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	// NewGCMWithRandomNonce draws a fresh 12-byte nonce for every Seal and
	// prepends it to the ciphertext.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encodes r as a record value.
func (s *sealer) seal(r Record) ([]byte, error) {
	sr := storedRecord{
		Format:      recordFormat,
		TokenType:   r.TokenType,
		Scope:       r.Scope,
		IssuedAt:    r.IssuedAt.UTC(),
		Expiry:      r.Expiry.UTC(),
		Fingerprint: r.Fingerprint,
	}
	sr.AccessToken = s.aead.Seal(nil, nil, []byte(r.AccessToken), additionalData(r.Profile, fieldAccessToken, &sr))
	if r.RefreshToken != "" {
		sr.RefreshToken = s.aead.Seal(nil, nil, []byte(r.RefreshToken), additionalData(r.Profile, fieldRefreshToken, &sr))
	}
	v, err := json.Marshal(&sr)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return v, nil
}

// open decodes the record value v stored under profile. Errors wrap
// ErrCorruptRecord or ErrUnsealFailed. It copies what it keeps, so v may be
// a bbolt slice.
func (s *sealer) open(profile string, v []byte) (Record, error) {
	var sr storedRecord
	if err := json.Unmarshal(v, &sr); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
	}
	if sr.Format != recordFormat {
		return Record{}, fmt.Errorf("%w: record format %d, want %d", ErrCorruptRecord, sr.Format, recordFormat)
	}
	if len(sr.AccessToken) == 0 {
		return Record{}, fmt.Errorf("%w: no access token", ErrCorruptRecord)
	}
	access, err := s.aead.Open(nil, nil, sr.AccessToken, additionalData(profile, fieldAccessToken, &sr))
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s", ErrUnsealFailed, fieldAccessToken)
	}
	var refresh []byte
	if len(sr.RefreshToken) > 0 {
		refresh, err = s.aead.Open(nil, nil, sr.RefreshToken, additionalData(profile, fieldRefreshToken, &sr))
		if err != nil {
			return Record{}, fmt.Errorf("%w: %s", ErrUnsealFailed, fieldRefreshToken)
		}
	}
	return Record{
		Profile:      profile,
		TokenType:    sr.TokenType,
		AccessToken:  string(access),
		RefreshToken: string(refresh),
		Scope:        sr.Scope,
		IssuedAt:     sr.IssuedAt.UTC(),
		Expiry:       sr.Expiry.UTC(),
		Fingerprint:  sr.Fingerprint,
	}, nil
}

// additionalData returns the GCM additional data for the sealed field of the
// record sr stored under profile: a label followed by length-prefixed
// strings, so that no two different inputs give the same bytes.
func additionalData(profile, field string, sr *storedRecord) []byte {
	parts := []string{
		"tokd record",
		fmt.Sprint(sr.Format),
		profile,
		field,
		sr.TokenType,
		sr.Scope,
		sr.IssuedAt.UTC().Format(time.RFC3339Nano),
		sr.Expiry.UTC().Format(time.RFC3339Nano),
		sr.Fingerprint,
	}
	var ad []byte
	for _, p := range parts {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(p)))
		ad = append(ad, p...)
	}
	return ad
}

// ErrUnsealFailed means a sealed field did not open: the record was sealed
// with another key, or it was changed on disk.
var ErrUnsealFailed = errors.New("cannot unseal record: wrong key or tampered data")

// ErrCorruptRecord means a record value is not a record this package can
// decode.
var ErrCorruptRecord = errors.New("corrupt record")
