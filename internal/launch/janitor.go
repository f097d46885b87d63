package launch

const (
	// EnvJanitor, set to 1, makes a supervisor binary run as the janitor
	// instead of its main: see runJanitor.
	EnvJanitor = "HANDOFF_JANITOR"
	// EnvJanitorStop tells the janitor how to stop the workers of a
	// supervisor that died: "SIGNAL TIMEOUT", the signal's number and the
	// milliseconds to wait for them before SIGKILL (0: wait for ever).
	// Without it the janitor sends SIGKILL at once.
	EnvJanitorStop = "HANDOFF_JANITOR_STOP"
)
