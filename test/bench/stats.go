package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Summary is a figure's distribution over its repeated runs.
type Summary struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	P10    float64   `json:"p10"`
	P90    float64   `json:"p90"`
	Values []float64 `json:"values"`
}

// summarize returns the median, extremes and the 10th and 90th percentiles
// (linear interpolation between closest ranks) of vs; the zero Summary for
// none.
func summarize(vs []float64) Summary {
	if len(vs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	return Summary{
		N:      len(s),
		Median: quantile(s, 0.5),
		Min:    s[0],
		Max:    s[len(s)-1],
		P10:    quantile(s, 0.1),
		P90:    quantile(s, 0.9),
		Values: append([]float64(nil), vs...),
	}
}

// quantile of sorted s, q in [0,1].
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// ms converts durations to milliseconds.
func ms(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// format prints v in unit with a precision that suits its size.
func format(v float64, unit string) string {
	switch {
	case unit == "ms" && v >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}
