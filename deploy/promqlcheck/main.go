// Command promqlcheck parses PromQL expressions with Prometheus' own parser, so the deploy tests
// check alert rules and dashboard queries exactly as Prometheus will read them.
//
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array, one object per
// expression, in order: {"error": "..."} when it does not parse, else {"metrics": [names...]}, the
// metric names its selectors read (sorted, unique).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Error   string   `json:"error,omitempty"`
	Metrics []string `json:"metrics"`
}

func check(expr string) result {
	node, err := parser.ParseExpr(expr)
	if err != nil {
		return result{Error: err.Error(), Metrics: []string{}}
	}
	seen := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			seen[vs.Name] = true
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				seen[m.Value] = true
			}
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return result{Metrics: names}
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	out := make([]result, len(exprs))
	for i, e := range exprs {
		out[i] = check(e)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck:", err)
		os.Exit(1)
	}
}
