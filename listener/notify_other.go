//go:build !linux

package listener

func sendNotify(string, string) error { return notSupported("Notify") }
