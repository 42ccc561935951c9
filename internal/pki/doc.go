// Package pki makes the certificates and keys of a first set-up (`mobikevpn pki`): a
// CA, gateway certificates and client certificates, with the standard library only.
package pki
