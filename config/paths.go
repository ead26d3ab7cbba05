package config

import "path/filepath"

// resolvePaths makes the file paths of f absolute, relative to base (the
// configuration file's directory): what a user writing "data_dir: data"
// beside the file means, wherever sockmq is started from.
func (f *File) resolvePaths(base string) {
	for _, p := range []*string{
		&f.Listeners.MQTTTLS.CertFile, &f.Listeners.MQTTTLS.KeyFile,
		&f.Listeners.HTTP.CertFile, &f.Listeners.HTTP.KeyFile,
		&f.Persistence.DataDir,
		&f.Auth.PasswordFile, &f.Auth.ACLFile,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	f.Cluster.ResolvePaths(base)
}
