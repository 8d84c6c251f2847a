package loadtest

// WriteForBench writes scenario S into dir and returns its proxies (temporary).
func WriteForBench(dir string) ([]ProxySpec, error) {
	m, err := writeMesh(dir, ScenarioS())
	if err != nil {
		return nil, err
	}
	return m.proxies(), nil
}
