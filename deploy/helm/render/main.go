// Command render renders a Helm chart the way `helm template` does, without helm: Go's
// text/template plus sprig (what Helm's engine is built on), with the functions and objects
// Helm's engine adds (include, tpl, required, toYaml, fromYaml, toJson, fromJson, lookup,
// .Values/.Release/.Chart/.Capabilities/.Template), values merged like Helm (values.yaml, then
// each -f file, then each --set / --set-string), and values.schema.json validated with
// gojsonschema — the validator Helm 3 used for draft-07 schemas.
//
//	render [-f values.yaml]... [--set k=v]... [--set-string k=v]... [--release-name N]
//	       [--namespace NS] [--kube-version v1.30.0] [--json] [--show-notes] [--values-json] CHART_DIR
//
// It prints the manifests as a multi-document YAML stream (with `# Source:` comments), or with
// --json one JSON array of the parsed objects (--values-json: the merged, validated values). A `fail`, a `required`, a schema violation or a
// YAML error exits 1 with Helm's "Error: …" line on stderr; a usage error exits 2.
//
// Build (Debian: golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
// golang-github-xeipuuv-gojsonschema-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o render ./deploy/helm/render
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v3"
)

type options struct {
	chartDir    string
	valueFiles  []string
	sets        []string
	setStrings  []string
	releaseName string
	namespace   string
	kubeVersion string
	jsonOut     bool
	showNotes   bool
	valuesOut   bool
}

type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "render: %v\n", err)
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... [--set k=v]... [--set-string k=v]... [--release-name N] [--namespace NS] [--kube-version vX.Y.Z] [--json] [--show-notes] [--values-json] CHART_DIR")
		os.Exit(2)
	}
	if err := run(opts, os.Stdout, os.Stderr); err != nil {
		var u usageErr
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "render: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func parseArgs(args []string) (options, error) {
	o := options{releaseName: "release-name", namespace: "default", kubeVersion: "v1.30.0"}
	next := func(i *int, flag string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var v string
		var err error
		name, inline, hasInline := strings.Cut(a, "=")
		value := func() (string, error) {
			if hasInline {
				return inline, nil
			}
			return next(&i, name)
		}
		switch name {
		case "-f", "--values":
			v, err = value()
			o.valueFiles = append(o.valueFiles, v)
		case "--set":
			v, err = value()
			o.sets = append(o.sets, v)
		case "--set-string":
			v, err = value()
			o.setStrings = append(o.setStrings, v)
		case "--release-name":
			o.releaseName, err = value()
		case "-n", "--namespace":
			o.namespace, err = value()
		case "--kube-version":
			o.kubeVersion, err = value()
		case "--json":
			o.jsonOut = true
		case "--show-notes":
			o.showNotes = true
		case "--values-json":
			o.valuesOut = true
		default:
			if strings.HasPrefix(a, "-") {
				return o, fmt.Errorf("unknown flag %s", a)
			}
			if o.chartDir != "" {
				return o, fmt.Errorf("more than one chart directory (%s, %s)", o.chartDir, a)
			}
			o.chartDir = a
		}
		if err != nil {
			return o, err
		}
	}
	if o.chartDir == "" {
		return o, errors.New("missing CHART_DIR")
	}
	return o, nil
}

func run(o options, stdout, stderr io.Writer) error {
	chartMeta, err := readYAMLMap(filepath.Join(o.chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return errors.New("Chart.yaml: name is required")
	}
	if err := checkKubeVersion(chartMeta, o.kubeVersion); err != nil {
		return err
	}
	defaults, err := readYAMLMap(filepath.Join(o.chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range o.valueFiles {
		vals, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		user = mergeMaps(user, vals)
	}
	for _, s := range o.sets {
		if err := parseSet(s, user, true); err != nil {
			return usageErr{fmt.Sprintf("--set %s: %v", s, err)}
		}
	}
	for _, s := range o.setStrings {
		if err := parseSet(s, user, false); err != nil {
			return usageErr{fmt.Sprintf("--set-string %s: %v", s, err)}
		}
	}
	values := coalesce(user, defaults)
	if err := validateSchema(o.chartDir, chartName, values); err != nil {
		return err
	}
	if o.valuesOut {
		out, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}

	kv, err := semver.NewVersion(o.kubeVersion)
	if err != nil {
		return usageErr{fmt.Sprintf("--kube-version %q: %v", o.kubeVersion, err)}
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": o.releaseName, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chartObject(chartMeta),
		"Capabilities": capabilities{
			KubeVersion: kubeVersion{Version: "v" + kv.String(), Major: strconv.FormatUint(kv.Major(), 10), Minor: strconv.FormatUint(kv.Minor(), 10), GitVersion: "v" + kv.String()},
			APIVersions: defaultAPIVersions,
			HelmVersion: map[string]interface{}{"Version": "v3.15.0"},
		},
		"Files": map[string]interface{}{},
	}
	rendered, notes, err := renderTemplates(o.chartDir, chartName, top)
	if err != nil {
		return err
	}
	docs, err := splitDocuments(rendered)
	if err != nil {
		return err
	}
	if o.jsonOut {
		objs := make([]interface{}, 0, len(docs))
		for _, d := range docs {
			objs = append(objs, d.obj)
		}
		out, err := json.MarshalIndent(objs, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", out)
		return err
	}
	for _, d := range docs {
		if _, err := fmt.Fprintf(stdout, "---\n# Source: %s\n%s\n", d.source, strings.TrimRight(d.text, "\n")); err != nil {
			return err
		}
	}
	if o.showNotes && notes != "" {
		fmt.Fprintf(stderr, "NOTES:\n%s\n", notes)
	}
	return nil
}

// ---- values ----

// readYAMLMap reads a YAML mapping with numbers as float64, as Helm's sigs.k8s.io/yaml does
// (YAML → JSON → interface{}); templates must therefore convert with `int` where they compare.
func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	v, err := jsonish(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a YAML mapping", file)
	}
	return m, nil
}

// jsonish converts decoded YAML to what encoding/json would produce: string-keyed maps and
// float64 numbers.
func jsonish(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, x := range t {
			c, err := jsonish(x)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[interface{}]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, x := range t {
			c, err := jsonish(x)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = c
		}
		return out, nil
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, x := range t {
			c, err := jsonish(x)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case uint64:
		return float64(t), nil
	default:
		return v, nil
	}
}

// mergeMaps merges b over a (Helm's -f merge): maps recursively, anything else replaced.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]interface{}); ok {
			if av, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce applies the chart's defaults under the user's values (Helm's CoalesceValues): a user
// null deletes the key, maps merge recursively, the user's non-map value wins.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	for k, dv := range defaults {
		uv, present := user[k]
		if !present {
			user[k] = deepCopy(dv)
			continue
		}
		if uv == nil {
			delete(user, k)
			continue
		}
		um, uok := uv.(map[string]interface{})
		dm, dok := dv.(map[string]interface{})
		if uok && dok {
			user[k] = coalesce(um, dm)
		}
	}
	// a user null for a key the chart does not have is dropped too
	for k, v := range user {
		if v == nil {
			delete(user, k)
		}
	}
	return user
}

func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(t))
		for k, x := range t {
			out[k] = deepCopy(x)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(t))
		for i, x := range t {
			out[i] = deepCopy(x)
		}
		return out
	default:
		return v
	}
}

var indexRe = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// parseSet applies one --set expression (Helm's strvals subset: a.b=c, a[0]=c, a={x,y},
// several comma-separated assignments, `\,` and `\.` escapes). typed: true/false/null/int64
// become typed values (--set), otherwise strings (--set-string).
func parseSet(expr string, into map[string]interface{}, typed bool) error {
	for _, assign := range splitUnescaped(expr, ',', true) {
		key, val, ok := cutUnescaped(assign, '=')
		if !ok {
			return fmt.Errorf("%q: expected key=value", assign)
		}
		segs := splitUnescaped(key, '.', false)
		var value interface{}
		if strings.HasPrefix(val, "{") && strings.HasSuffix(val, "}") {
			list := []interface{}{}
			inner := val[1 : len(val)-1]
			if inner != "" {
				for _, item := range splitUnescaped(inner, ',', false) {
					list = append(list, typedVal(unescape(item), typed))
				}
			}
			value = list
		} else {
			value = typedVal(unescape(val), typed)
		}
		if err := setPath(into, segs, value); err != nil {
			return err
		}
	}
	return nil
}

func typedVal(s string, typed bool) interface{} {
	if !typed {
		return s
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if len(s) > 1 && s[0] == '0' {
		return s
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return s
}

func setPath(m map[string]interface{}, segs []string, value interface{}) error {
	seg := unescape(segs[0])
	last := len(segs) == 1
	if mm := indexRe.FindStringSubmatch(seg); mm != nil {
		name := mm[1]
		idx, _ := strconv.Atoi(mm[2])
		if idx > 65535 {
			return fmt.Errorf("index %d too large", idx)
		}
		list, _ := m[name].([]interface{})
		for len(list) <= idx {
			list = append(list, nil)
		}
		if last {
			list[idx] = value
		} else {
			child, ok := list[idx].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
			}
			if err := setPath(child, segs[1:], value); err != nil {
				return err
			}
			list[idx] = child
		}
		m[name] = list
		return nil
	}
	if seg == "" {
		return errors.New("empty key segment")
	}
	if last {
		m[seg] = value
		return nil
	}
	child, ok := m[seg].(map[string]interface{})
	if !ok {
		child = map[string]interface{}{}
		m[seg] = child
	}
	return setPath(child, segs[1:], value)
}

// splitUnescaped splits on sep outside `\` escapes (and, with braces, outside {…}).
func splitUnescaped(s string, sep byte, braces bool) []string {
	var parts []string
	depth := 0
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}' && depth > 0:
			depth--
		case s[i] == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func cutUnescaped(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func validateSchema(chartDir, chartName string, values map[string]interface{}) error {
	schemaFile := filepath.Join(chartDir, "values.schema.json")
	schema, err := os.ReadFile(schemaFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", chartName)
	for _, e := range res.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return errors.New(strings.TrimRight(b.String(), "\n"))
}

func checkKubeVersion(meta map[string]interface{}, version string) error {
	constraint, _ := meta["kubeVersion"].(string)
	if constraint == "" {
		return nil
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("Chart.yaml kubeVersion %q: %v", constraint, err)
	}
	v, err := semver.NewVersion(version)
	if err != nil {
		return usageErr{fmt.Sprintf("--kube-version %q: %v", version, err)}
	}
	if !c.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", constraint, version)
	}
	return nil
}

// ---- the objects Helm passes to templates ----

var chartFieldNames = map[string]string{
	"apiVersion": "APIVersion", "appVersion": "AppVersion", "kubeVersion": "KubeVersion",
}

func chartObject(meta map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range meta {
		name, ok := chartFieldNames[k]
		if !ok {
			name = strings.ToUpper(k[:1]) + k[1:]
		}
		out[name] = v
	}
	return out
}

type kubeVersion struct {
	Version, Major, Minor, GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type versionSet []string

// Has is what charts call as .Capabilities.APIVersions.Has "policy/v1".
func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
	HelmVersion map[string]interface{}
}

var defaultAPIVersions = versionSet{
	"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1",
	"autoscaling/v2", "apps/v1/Deployment", "v1/Service", "v1/ServiceAccount", "policy/v1/PodDisruptionBudget",
	"networking.k8s.io/v1/NetworkPolicy",
}

// ---- templates ----

func toYAML(v interface{}) string {
	data, err := marshalYAML(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

// marshalYAML marshals like sigs.k8s.io/yaml: through JSON (so integral numbers print as
// integers and keys are sorted), two-space indentation.
func marshalYAML(v interface{}) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var generic interface{}
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(numbersForYAML(generic)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func numbersForYAML(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		for k, x := range t {
			t[k] = numbersForYAML(x)
		}
		return t
	case []interface{}:
		for i, x := range t {
			t[i] = numbersForYAML(x)
		}
		return t
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n
		}
		f, _ := t.Float64()
		return f
	default:
		return v
	}
}

func fromYAML(s string) map[string]interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	v, err := jsonish(raw)
	if err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return map[string]interface{}{}
	}
	return m
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func renderTemplates(chartDir, chartName string, top map[string]interface{}) (string, string, error) {
	tdir := filepath.Join(chartDir, "templates")
	entries, err := os.ReadDir(tdir)
	if err != nil {
		return "", "", err
	}
	var names []string
	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includedNames := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		nt, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := nt.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(msg string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(msg)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(msg)
		}
		return val, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	t.Funcs(funcs)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(tdir, e.Name()))
		if err != nil {
			return "", "", err
		}
		name := path.Join(chartName, "templates", e.Name())
		if _, err := t.New(name).Parse(string(data)); err != nil {
			return "", "", fmt.Errorf("parse error in %s: %v", name, err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var out strings.Builder
	notes := ""
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, top); err != nil {
			return "", "", cleanupExecError(name, err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			notes = text
			continue
		}
		if !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".yml") {
			continue
		}
		fmt.Fprintf(&out, "\n---\n# Source: %s\n%s", name, text)
	}
	return out.String(), notes, nil
}

var execErrRe = regexp.MustCompile(`^template: (.*?): executing "(.*?)" at <(.*?)>: (.*)$`)

// cleanupExecError turns a template error into Helm's "execution error at (file:line:col): msg".
func cleanupExecError(name string, err error) error {
	msg := err.Error()
	// the innermost error (a fail/required inside includes) is at the end of the chain
	if m := execErrRe.FindStringSubmatch(msg); m != nil {
		inner := m[4]
		for {
			if n := execErrRe.FindStringSubmatch(strings.TrimPrefix(inner, "error calling include: ")); n != nil {
				m = n
				inner = n[4]
				continue
			}
			break
		}
		for _, p := range []string{"error calling fail: ", "error calling required: ", "error calling include: "} {
			inner = strings.TrimPrefix(inner, p)
		}
		return fmt.Errorf("execution error at (%s): %s", m[1], inner)
	}
	return fmt.Errorf("%s: %v", name, err)
}

type document struct {
	source string
	text   string
	obj    interface{}
}

var sourceRe = regexp.MustCompile(`^# Source: (.*)$`)

// splitDocuments splits the stream into documents, drops empty ones, and parses each (a YAML
// error is a render error, as with helm template).
func splitDocuments(stream string) ([]document, error) {
	var docs []document
	source := ""
	for _, part := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(stream, -1) {
		lines := strings.Split(part, "\n")
		var body []string
		for _, l := range lines {
			if m := sourceRe.FindStringSubmatch(l); m != nil {
				source = m[1]
				continue
			}
			body = append(body, l)
		}
		text := strings.Trim(strings.Join(body, "\n"), "\n")
		var obj interface{}
		if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
			return nil, fmt.Errorf("YAML parse error on %s: %v\n%s", source, err, text)
		}
		if obj == nil {
			continue
		}
		obj, err := jsonish(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", source, err)
		}
		if _, ok := obj.(map[string]interface{}); !ok {
			return nil, fmt.Errorf("%s: a manifest must be a YAML mapping", source)
		}
		docs = append(docs, document{source: source, text: text, obj: obj})
	}
	return docs, nil
}
