package install

import (
	"fmt"
	"strconv"
	"strings"
)

// No YAML library is a dependency of the module, so these tests read the
// manifests with this reader for the subset of YAML they use: block mappings
// and sequences by indentation, plain, quoted and flow-list ([a, "b"])
// scalars, literal block scalars (|), comments and "---" document separators.
// Anything else is an error, so a manifest that leaves the subset fails the
// tests rather than being misread.

type yamlLine struct {
	n      int // 1-based line number
	indent int
	text   string // without indentation and trailing comment
	raw    string // the line as written (for block scalars)
}

func parseYAMLDocs(src string) ([]map[string]any, error) {
	var docs []map[string]any
	var cur []yamlLine
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		p := &yamlParser{lines: cur}
		v, err := p.node(cur[0].indent)
		if err != nil {
			return err
		}
		if p.i != len(p.lines) {
			return fmt.Errorf("line %d: unexpected content %q", p.lines[p.i].n, p.lines[p.i].text)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("line %d: document is not a mapping", cur[0].n)
		}
		docs = append(docs, m)
		cur = nil
		return nil
	}
	for i, raw := range strings.Split(src, "\n") {
		if strings.TrimSpace(raw) == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if strings.Contains(raw, "\t") && strings.TrimSpace(raw) != "" && strings.Index(raw, "\t") < len(raw)-len(strings.TrimLeft(raw, " \t")) {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " "))
		cur = append(cur, yamlLine{n: i + 1, indent: indent, text: stripComment(strings.TrimSpace(raw)), raw: raw})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// stripComment drops a trailing " # comment" outside quotes.
func stripComment(s string) string {
	inS, inD := false, false
	for i, c := range s {
		switch {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == '#' && !inS && !inD && (i == 0 || s[i-1] == ' '):
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

// skip moves past blank and comment-only lines.
func (p *yamlParser) skip() {
	for p.i < len(p.lines) && p.lines[p.i].text == "" {
		p.i++
	}
}

// node parses the block node starting at the next line, indented indent.
func (p *yamlParser) node(indent int) (any, error) {
	p.skip()
	if p.i >= len(p.lines) {
		return nil, nil
	}
	l := p.lines[p.i]
	if l.indent != indent {
		return nil, fmt.Errorf("line %d: indentation %d, want %d", l.n, l.indent, indent)
	}
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		return p.seq(indent)
	}
	return p.mapping(indent)
}

func (p *yamlParser) mapping(indent int) (map[string]any, error) {
	m := map[string]any{}
	for {
		p.skip()
		if p.i >= len(p.lines) || p.lines[p.i].indent < indent {
			return m, nil
		}
		l := p.lines[p.i]
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.n)
		}
		if strings.HasPrefix(l.text, "- ") {
			return m, nil
		}
		key, rest, ok := splitKey(l.text)
		if !ok {
			return nil, fmt.Errorf("line %d: want key: value, got %q", l.n, l.text)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.n, key)
		}
		p.i++
		v, err := p.value(rest, indent, l.n)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
}

func (p *yamlParser) seq(indent int) ([]any, error) {
	var out []any
	for {
		p.skip()
		if p.i >= len(p.lines) || p.lines[p.i].indent != indent || !(p.lines[p.i].text == "-" || strings.HasPrefix(p.lines[p.i].text, "- ")) {
			return out, nil
		}
		l := p.lines[p.i]
		item := strings.TrimSpace(strings.TrimPrefix(l.text, "-"))
		if item == "|" || item == "|-" {
			p.i++
			out = append(out, p.literal(indent, item == "|-"))
			continue
		}
		if item == "" {
			p.i++
			v, err := p.node(p.nextIndent(indent))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		if _, _, ok := splitKey(item); ok && !strings.HasPrefix(item, `"`) && !strings.HasPrefix(item, `'`) {
			// "- key: value" opens a mapping indented at the key's column.
			col := l.indent + (len(l.text) - len(strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")))
			p.lines[p.i].indent = col
			p.lines[p.i].text = item
			m, err := p.mapping(col)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		p.i++
		v, err := scalar(item, l.n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

func (p *yamlParser) nextIndent(parent int) int {
	p.skip()
	if p.i < len(p.lines) {
		return p.lines[p.i].indent
	}
	return parent + 1
}

// value is the value of a mapping key whose line held rest after the colon.
func (p *yamlParser) value(rest string, indent, n int) (any, error) {
	switch {
	case rest == "|" || rest == "|-":
		return p.literal(indent, rest == "|-"), nil
	case rest != "":
		return scalar(rest, n)
	}
	p.skip()
	if p.i >= len(p.lines) {
		return nil, nil
	}
	next := p.lines[p.i]
	isSeq := next.text == "-" || strings.HasPrefix(next.text, "- ")
	if next.indent > indent || (isSeq && next.indent == indent) {
		return p.node(next.indent)
	}
	return nil, nil
}

// literal reads a "|" block scalar: the following lines indented more than
// the key.
func (p *yamlParser) literal(indent int, strip bool) string {
	var b strings.Builder
	blockIndent := -1
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if strings.TrimSpace(l.raw) != "" {
			if l.indent <= indent {
				break
			}
			if blockIndent < 0 {
				blockIndent = l.indent
			}
			if l.indent < blockIndent {
				break
			}
			b.WriteString(l.raw[blockIndent:])
		}
		b.WriteString("\n")
		p.i++
	}
	s := strings.TrimRight(b.String(), "\n")
	if !strip {
		s += "\n"
	}
	return s
}

func splitKey(s string) (key, rest string, ok bool) {
	i := strings.Index(s, ": ")
	if i < 0 {
		if strings.HasSuffix(s, ":") {
			i = len(s) - 1
		} else {
			return "", "", false
		}
	}
	key = strings.TrimSpace(s[:i])
	if key == "" || strings.ContainsAny(key, "[]{}") {
		return "", "", false
	}
	if uq, err := unquote(key); err == nil {
		key = uq
	}
	return key, strings.TrimSpace(s[i+1:]), true
}

func scalar(s string, n int) (any, error) {
	if strings.HasPrefix(s, "{") || s == "&" || strings.HasPrefix(s, "*") || strings.HasPrefix(s, "!") || s == ">" {
		return nil, fmt.Errorf("line %d: %q is outside the YAML subset these tests read", n, s)
	}
	if strings.HasPrefix(s, "[") {
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("line %d: unterminated flow list %q", n, s)
		}
		inner := strings.TrimSpace(s[1 : len(s)-1])
		out := []any{}
		if inner == "" {
			return out, nil
		}
		for _, part := range splitFlow(inner) {
			v, err := scalar(strings.TrimSpace(part), n)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	if strings.HasPrefix(s, `"`) || strings.HasPrefix(s, `'`) {
		v, err := unquote(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		return v, nil
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if v, err := strconv.Atoi(s); err == nil {
		return v, nil
	}
	return s, nil
}

// splitFlow splits a flow list's inside on commas outside quotes.
func splitFlow(s string) []string {
	var parts []string
	inS, inD, start := false, false, 0
	for i, c := range s {
		switch {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == ',' && !inS && !inD:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unquote(s string) (string, error) {
	switch {
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"':
		return strconv.Unquote(s)
	case len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'':
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	}
	return "", fmt.Errorf("%q is not a quoted string", s)
}

// path walks a parsed document: keys for mappings, ints for sequences.
func path(v any, keys ...any) (any, error) {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("at %q: not a mapping", k)
			}
			if v, ok = m[k]; !ok {
				return nil, fmt.Errorf("key %q missing", k)
			}
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil, fmt.Errorf("at [%d]: not a sequence of that length", k)
			}
			v = s[k]
		}
	}
	return v, nil
}
