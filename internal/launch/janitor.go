package launch

// EnvJanitor, set to 1, makes a supervisor binary run as the janitor
// instead of its main: see RunJanitor.
const EnvJanitor = "HANDOFF_JANITOR"
