//go:build !race

package server

// raceEnabled: built with -race, whose instrumentation deepens every stack.
const raceEnabled = false
