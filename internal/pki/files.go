package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The CA's files in a folder.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// File modes: certificates are public, keys are not.
const (
	CertMode fs.FileMode = 0o644
	KeyMode  fs.FileMode = 0o600
)

// File is a file to write.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// Files are the key file (KeyMode) and the certificate file (CertMode) of is in dir,
// named base.key and base.pem.
func (is *Issued) Files(dir, base string) []File {
	return []File{
		{Path: filepath.Join(dir, base+".key"), Data: is.KeyPEM, Mode: KeyMode},
		{Path: filepath.Join(dir, base+".pem"), Data: is.CertPEM, Mode: CertMode},
	}
}

// WriteFiles writes files, each with its mode. Without force it writes none of them when
// one exists already (the error wraps fs.ErrExist and names the file); with force it
// replaces existing files (atomically, each with its new mode). When one cannot be
// written, those written before it by this call are removed again.
func WriteFiles(files []File, force bool) error {
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.Path); err == nil {
				return fmt.Errorf("%s: %w", f.Path, fs.ErrExist)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for i, f := range files {
		write := createFile
		if force {
			write = replaceFile
		}
		if err := write(f); err != nil {
			for _, done := range files[:i] {
				os.Remove(done.Path)
			}
			return err
		}
	}
	return nil
}

// createFile writes a new file; it fails when the file exists.
func createFile(f File) error {
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.Mode)
	if err != nil {
		return err
	}
	if err := finish(fh, f); err != nil {
		os.Remove(f.Path)
		return err
	}
	return nil
}

// replaceFile writes a temporary file in the same folder and renames it to f.Path.
func replaceFile(f File) error {
	fh, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	tmp := fh.Name()
	if err := fh.Chmod(f.Mode); err != nil {
		fh.Close()
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := finish(fh, f); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// finish writes f's data to fh, syncs and closes it.
func finish(fh *os.File, f File) error {
	_, err := fh.Write(f.Data)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return nil
}

// LoadCA reads a CA certificate (PEM) and its private key (PEM: PKCS#8, or SEC1 "EC
// PRIVATE KEY", or PKCS#1 "RSA PRIVATE KEY"), and checks that the certificate is a CA's
// that may sign certificates and that the key is its key. Errors name the file.
func LoadCA(certFile, keyFile string) (*Issued, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	blk := firstBlock(b, "CERTIFICATE")
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: %q is not a CA certificate", certFile, cert.Subject.String())
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q: its key usage does not allow signing certificates", certFile, cert.Subject.String())
	}
	key, err := loadKey(keyFile)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s: not the private key of %s", keyFile, certFile)
	}
	return &Issued{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(blk)}, nil
}

func loadKey(name string) (crypto.Signer, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, fmt.Errorf("%s: no PEM private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", name)
		}
		var k any
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%s: encrypted private keys are not supported", name)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s block does not parse: %w", name, blk.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported private key type %T", name, k)
		}
		return s, nil
	}
}

func firstBlock(b []byte, typ string) *pem.Block {
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil || blk.Type == typ {
			return blk
		}
	}
}

// Gateways returns the subject common names of the gateway certificates in dir: the
// NAME.pem files (ca.pem aside) holding a certificate that ca signed with the
// serverAuth extended key usage, sorted. Files that do not parse are skipped.
func Gateways(dir string, ca *x509.Certificate) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	var names []string
	for _, p := range paths {
		if filepath.Base(p) == CACertFile {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		blk := firstBlock(b, "CERTIFICATE")
		if blk == nil {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || c.CheckSignatureFrom(ca) != nil || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
			continue
		}
		if strings.TrimSuffix(filepath.Base(p), ".pem") == c.Subject.CommonName {
			names = append(names, c.Subject.CommonName)
		}
	}
	slices.Sort(names)
	return names
}
