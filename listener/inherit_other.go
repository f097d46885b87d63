//go:build !linux

package listener

func inherit() ([]Inherited, error) { return nil, notSupported("Inherit") }
