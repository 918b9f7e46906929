package config

import (
	"strings"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// optionsName is the protobuf name of the runtime options the shim accepts.
var optionsName = (&runtimeoptions.Options{}).ProtoReflect().Descriptor().FullName()

// optionsFrom decodes containerd's runtime options. It returns nil for a
// nil or empty Any. Options of any other type are refused.
func optionsFrom(opts typeurl.Any) (*runtimeoptions.Options, error) {
	if opts == nil || (opts.GetTypeUrl() == "" && len(opts.GetValue()) == 0) {
		return nil, nil
	}
	url := opts.GetTypeUrl()
	name := url
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if protoreflect.FullName(name) != optionsName {
		return nil, invalidf("runtime options of type %s are not accepted: containerd-shim-boxlite-v2 takes %s (ConfigPath, or the TOML of the runtime's options section as config_body); remove options meant for another runtime from the runtime handler", quote(url), optionsName)
	}
	var o runtimeoptions.Options
	if err := proto.Unmarshal(opts.GetValue(), &o); err != nil {
		return nil, invalidf("runtime options of type %s do not decode: %v", quote(url), err)
	}
	return &o, nil
}

// PathFromOptions returns the configuration file named by containerd's
// runtime options (runtimeoptions.v1.Options.ConfigPath), as Kata does. A nil
// or empty Any, or options naming no file, give "".
func PathFromOptions(opts typeurl.Any) (string, error) {
	o, err := optionsFrom(opts)
	if err != nil || o == nil {
		return "", err
	}
	return o.GetConfigPath(), nil
}

// optionsBody is what containerd's CRI plugin sends as config_body: the whole
// options section of the runtime handler, which may hold its own TypeUrl and
// an empty ConfigPath beside the shim's keys.
type optionsBody struct {
	Config
	TypeURL    string `toml:"TypeUrl"`
	ConfigPath string `toml:"ConfigPath"`
}

// LoadFromOptions loads the configuration that containerd's runtime options
// name:
//   - ConfigPath set: that file, which must exist and be absolute (a
//     config_body beside it is ignored, as runtimeoptions documents);
//   - else ConfigBody set: that TOML text over the defaults (no file is
//     read). containerd's CRI plugin sends the runtime handler's whole
//     options section this way, so top-level TypeUrl and an empty
//     ConfigPath are tolerated in it;
//   - neither, or no options: Load("") (DefaultPath, or defaults).
//
// Options.TypeUrl is not used.
func LoadFromOptions(opts typeurl.Any) (*Config, error) {
	o, err := optionsFrom(opts)
	if err != nil {
		return nil, err
	}
	switch {
	case o == nil || (o.GetConfigPath() == "" && len(o.GetConfigBody()) == 0):
		return Load("")
	case o.GetConfigPath() != "":
		p := o.GetConfigPath()
		if !isAbsPath(p) {
			return nil, invalidf("runtime option ConfigPath = %s: must be an absolute path to a TOML file", quote(p))
		}
		return Load(p)
	default:
		return parseOptionsBody(o.GetConfigBody())
	}
}

func parseOptionsBody(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{Source: SourceOptionsBody, Problems: []string{"larger than 1 MiB, the most accepted"}}
	}
	b := optionsBody{Config: *Default()}
	if err := decode(data, SourceOptionsBody, &b); err != nil {
		return nil, err
	}
	if b.ConfigPath != "" {
		return nil, &Error{Source: SourceOptionsBody, Problems: []string{"ConfigPath = " + quote(b.ConfigPath) + ": a config_body cannot name a file; set ConfigPath as a runtime option instead, or leave it empty"}}
	}
	c := &b.Config
	c.Path = ""
	c.Source = SourceOptionsBody
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
