package worker

// handoverSupported: Linux passes descriptors over its socket pair.
const handoverSupported = true
