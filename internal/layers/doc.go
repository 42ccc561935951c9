// Package layers holds the test that checks the module's packages against the import
// rules of ARCHITECTURE.md.
package layers
