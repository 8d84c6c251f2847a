package loadtest

// WriteForBench writes scenario S into dir and returns its proxies, for
// benchmarks of the push path on the load test's own mesh (the server's
// BenchmarkRebuildEndpointChangeScenarioS).
func WriteForBench(dir string) ([]ProxySpec, error) {
	m, err := writeMesh(dir, ScenarioS())
	if err != nil {
		return nil, err
	}
	return m.proxies(), nil
}

// WriteMeshForBench writes the folder of scenario S with the given number of
// services (S has 1000) into dir, as the cold start measures it.
func WriteMeshForBench(dir string, services int) error {
	sc := ScenarioS()
	sc.Services = services
	_, err := writeMesh(dir, sc)
	return err
}
