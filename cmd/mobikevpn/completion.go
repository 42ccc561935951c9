package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// shells are the shells `mobikevpn completion` writes scripts for.
var shells = []string{"bash", "zsh", "fish"}

// completionCommand is `mobikevpn completion bash|zsh|fish`; cmd is cliApp's command
// wrapper.
func (a *app) completionCommand(cmd func(*cli.Command) *cli.Command) *cli.Command {
	return cmd(&cli.Command{
		Name:      "completion",
		Usage:     "print a completion script for the shell: bash, zsh or fish",
		UsageText: "mobikevpn completion bash|zsh|fish (bash: source <(mobikevpn completion bash))",
		ArgsUsage: "SHELL",
		Action:    a.cmdCompletion,
	})
}

// manCommand is `mobikevpn man`; cmd is cliApp's command wrapper.
func (a *app) manCommand(cmd func(*cli.Command) *cli.Command) *cli.Command {
	return cmd(&cli.Command{
		Name:      "man",
		Usage:     "print the manual page (roff): mobikevpn man > mobikevpn.8",
		ArgsUsage: " ",
		Action:    a.cmdMan,
	})
}

func (a *app) cmdCompletion(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	choices := strings.Join(shells, ", ")
	if c.NArg() != 1 {
		return usageErr("completion needs one shell, one of %s: mobikevpn completion bash", choices)
	}
	tree := completionTree(a.cliApp())
	var script string
	switch shell := c.Args().First(); shell {
	case "bash":
		script = bashCompletion(tree)
	case "zsh":
		script = zshCompletion(tree)
	case "fish":
		var err error
		if script, err = a.fishCompletion(tree); err != nil {
			return failed("completion fish: %v", err)
		}
	default:
		return usageErr("completion %q: unknown shell; choose one of %s", shell, choices)
	}
	_, err := fmt.Fprint(a.stdout, script)
	return err
}

// manDescription is the manual page's DESCRIPTION (markdown).
const manDescription = `mobikevpn is a userspace IKEv2/IPsec VPN with MOBIKE, a gateway or a client.
**mobikevpn run -c FILE** runs the daemon; **status**, **up**, **down**, **switch**, **move**,
**drain** and **cluster status** talk to the running daemon over its control socket;
**check** validates a configuration; **pki** makes certificates for a first set-up.`

// manTail are the manual page's last sections (roff), after the commands.
const manTail = `.SH EXIT STATUS
0 on success, 1 when the operation failed, 2 on bad usage or a bad configuration.
.SH ENVIRONMENT
.TP
.B MOBIKEVPN_CONTROL
the control socket when \-\-control is not given.
.TP
.B MOBIKEVPN_CPUPROFILE
a file that \fBrun\fP writes a CPU profile of the daemon to (for developers).
`

func (a *app) cmdMan(c *cli.Context) error {
	if err := a.common(c); err != nil {
		return err
	}
	if err := noArgs(c); err != nil {
		return err
	}
	ca := a.cliApp()
	ca.Description = manDescription
	man, err := ca.ToMan()
	if err != nil {
		return failed("man: %v", err)
	}
	_, err = fmt.Fprint(a.stdout, strings.TrimRight(man, "\n")+"\n\n"+manTail)
	return err
}

// compNode is what completes after a command path ("" for the top, "cluster status").
type compNode struct {
	path  string
	cmds  []compItem // subcommands
	flags []compItem // flag spellings ("--config", "-c")
	value []string   // the flag spellings that take a value
	args  []string   // words for positional arguments
}

type compItem struct{ name, usage string }

// helpUsage describes the help command urfave/cli adds.
const helpUsage = "show the commands, or the help of one"

// completionTree is every command path of ca with its subcommands and flags, the top
// first, parents before their subcommands.
func completionTree(ca *cli.App) []compNode {
	top := compNode{cmds: []compItem{{"help", helpUsage}}}
	addFlags(&top, append(slices.Clone(ca.Flags), cli.HelpFlag))
	var nodes []compNode
	var walk func(path string, cmds []*cli.Command) []compItem
	walk = func(path string, cmds []*cli.Command) []compItem {
		var items []compItem
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			items = append(items, compItem{c.Name, c.Usage})
			n := compNode{path: strings.TrimSpace(path + " " + c.Name)}
			addFlags(&n, append(slices.Clone(c.Flags), cli.HelpFlag))
			if c.Name == "completion" && path == "" {
				n.args = shells
			}
			i := len(nodes)
			nodes = append(nodes, n)
			nodes[i].cmds = walk(n.path, c.Subcommands)
		}
		return items
	}
	top.cmds = append(walk("", ca.Commands), top.cmds...)
	help := compNode{path: "help"}
	addFlags(&help, []cli.Flag{cli.HelpFlag})
	for _, it := range top.cmds {
		help.args = append(help.args, it.name)
	}
	return append([]compNode{top, help}, nodes...)
}

func addFlags(n *compNode, flags []cli.Flag) {
	for _, f := range flags {
		usage, takes := "", false
		if d, ok := f.(cli.DocGenerationFlag); ok {
			usage, takes = strings.ReplaceAll(d.GetUsage(), "`", ""), d.TakesValue()
		}
		for _, name := range f.Names() {
			s := "--" + name
			if len(name) == 1 {
				s = "-" + name
			}
			n.flags = append(n.flags, compItem{s, usage})
			if takes {
				n.value = append(n.value, s)
			}
		}
	}
}

// valueCompletion says what completes the value of flag name: files, dirs or words.
func valueCompletion(name string) (kind string, words []string) {
	switch name {
	case "--log-level":
		return "words", []string{"debug", "info", "warn", "error"}
	case "--config", "-c", "--control":
		return "files", nil
	case "--dir":
		return "dirs", nil
	}
	return "", nil
}

// valueCases groups the value-taking flags of tree by what completes their values:
// kind ("files", "dirs" or "words:w1 w2") to the flags, in a stable order.
func valueCases(tree []compNode) (kinds []string, flags map[string][]string) {
	flags = map[string][]string{}
	for _, n := range tree {
		for _, f := range n.value {
			kind, words := valueCompletion(f)
			if kind == "" {
				continue
			}
			if kind == "words" {
				kind += ":" + strings.Join(words, " ")
			}
			if !slices.Contains(flags[kind], f) {
				if flags[kind] == nil {
					kinds = append(kinds, kind)
				}
				flags[kind] = append(flags[kind], f)
			}
		}
	}
	return kinds, flags
}

func names(items []compItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.name
	}
	return out
}

// shQuote quotes s for a POSIX shell (and zsh, and bash) in single quotes.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

const bashHead = `# bash completion for mobikevpn, generated by 'mobikevpn completion bash'.
# Use: source <(mobikevpn completion bash), or save it as
# /usr/share/bash-completion/completions/mobikevpn.

# _mobikevpn_spec PATH sets, for the command path PATH, the subcommands (cmds), the
# flags, the flags that take a value (vflags) and the words for arguments (args).
_mobikevpn_spec() {
    cmds= flags= vflags= args=
    case $1 in
`

const bashMain = `    esac
}

_mobikevpn() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local cmds flags vflags args cmdpath= w i skip= flag=
    COMPREPLY=()
    _mobikevpn_spec ''
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == = ]]; then
            skip=1 # --flag=value: the value follows
        elif [[ -n $skip ]]; then
            skip=
        elif [[ " $vflags " == *" $w "* ]]; then
            skip=1
        elif [[ $w != -* && " $cmds " == *" $w "* ]]; then
            cmdpath=${cmdpath:+$cmdpath }$w
            _mobikevpn_spec "$cmdpath"
        fi
    done
    if [[ $prev == = && $COMP_CWORD -ge 2 ]]; then
        flag=${COMP_WORDS[COMP_CWORD-2]}
    elif [[ -n $skip ]]; then
        flag=$prev
    fi
    if [[ -n $flag ]]; then
        case $flag in
`

const bashTail = `        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$cmds $args" -- "$cur"))
    fi
    return 0
}

complete -F _mobikevpn mobikevpn
`

// bashCompletion is the bash completion script for tree.
func bashCompletion(tree []compNode) string {
	var b strings.Builder
	b.WriteString(bashHead)
	for _, n := range tree {
		fmt.Fprintf(&b, "    %s)\n", shQuote(n.path))
		fmt.Fprintf(&b, "        cmds=%s\n", shQuote(strings.Join(names(n.cmds), " ")))
		fmt.Fprintf(&b, "        flags=%s\n", shQuote(strings.Join(names(n.flags), " ")))
		fmt.Fprintf(&b, "        vflags=%s\n", shQuote(strings.Join(n.value, " ")))
		fmt.Fprintf(&b, "        args=%s\n", shQuote(strings.Join(n.args, " ")))
		b.WriteString("        ;;\n")
	}
	b.WriteString(bashMain)
	kinds, flags := valueCases(tree)
	for _, k := range kinds {
		fmt.Fprintf(&b, "        %s)\n", strings.Join(flags[k], "|"))
		switch {
		case k == "files":
			b.WriteString("            compopt -o filenames 2>/dev/null\n")
			b.WriteString("            local IFS=$'\\n'\n")
			b.WriteString("            COMPREPLY=($(compgen -f -- \"$cur\"))\n")
		case k == "dirs":
			b.WriteString("            compopt -o filenames 2>/dev/null\n")
			b.WriteString("            local IFS=$'\\n'\n")
			b.WriteString("            COMPREPLY=($(compgen -d -- \"$cur\"))\n")
		default:
			fmt.Fprintf(&b, "            COMPREPLY=($(compgen -W %s -- \"$cur\"))\n", shQuote(strings.TrimPrefix(k, "words:")))
		}
		b.WriteString("            ;;\n")
	}
	b.WriteString(bashTail)
	return b.String()
}

const zshHead = `#compdef mobikevpn
# zsh completion for mobikevpn, generated by 'mobikevpn completion zsh'.
# Use: source <(mobikevpn completion zsh) after compinit, or save it as _mobikevpn in a
# folder of $fpath.

# _mobikevpn_spec PATH sets, for the command path PATH, the subcommands (cmds,
# name:description), the flags (name:description), the flags that take a value
# (vflags) and the words for arguments (args).
_mobikevpn_spec() {
    cmds=()
    flags=()
    vflags=()
    args=()
    case $1 in
`

const zshMain = `    esac
}

_mobikevpn() {
    local -a cmds flags vflags args known
    local cmdpath='' w='' skip='' i
    _mobikevpn_spec ''
    for (( i = 2; i < CURRENT; i++ )); do
        w=${words[i]}
        if [[ -n $skip ]]; then
            skip=''
        elif [[ $w == -*=* ]]; then
            :
        elif (( ${vflags[(Ie)$w]} )); then
            skip=1
        elif [[ $w != -* ]]; then
            known=(${cmds%%:*})
            if (( ${known[(Ie)$w]} )); then
                cmdpath=${cmdpath:+$cmdpath }$w
                _mobikevpn_spec "$cmdpath"
            fi
        fi
    done
    if [[ -n $skip ]]; then
        case ${words[CURRENT-1]} in
`

const zshTail = `        esac
        return
    fi
    if [[ $PREFIX == -* ]]; then
        _describe -t options 'option' flags
    else
        (( ${#cmds} )) && _describe -t commands 'command' cmds
        (( ${#args} )) && compadd -- $args
    fi
    return 0
}

if [[ $funcstack[1] == _mobikevpn ]]; then
    _mobikevpn "$@"
else
    compdef _mobikevpn mobikevpn
fi
`

// zshCompletion is the zsh completion script for tree.
func zshCompletion(tree []compNode) string {
	described := func(items []compItem) string {
		q := make([]string, len(items))
		for i, it := range items {
			q[i] = shQuote(it.name + ":" + strings.Join(strings.Fields(it.usage), " "))
		}
		return strings.Join(q, " ")
	}
	var b strings.Builder
	b.WriteString(zshHead)
	for _, n := range tree {
		fmt.Fprintf(&b, "    %s)\n", shQuote(n.path))
		fmt.Fprintf(&b, "        cmds=(%s)\n", described(n.cmds))
		fmt.Fprintf(&b, "        flags=(%s)\n", described(n.flags))
		fmt.Fprintf(&b, "        vflags=(%s)\n", strings.Join(n.value, " "))
		fmt.Fprintf(&b, "        args=(%s)\n", strings.Join(n.args, " "))
		b.WriteString("        ;;\n")
	}
	b.WriteString(zshMain)
	kinds, flags := valueCases(tree)
	for _, k := range kinds {
		fmt.Fprintf(&b, "        %s)\n", strings.Join(flags[k], "|"))
		switch {
		case k == "files":
			b.WriteString("            _files\n")
		case k == "dirs":
			b.WriteString("            _files -/\n")
		default:
			fmt.Fprintf(&b, "            compadd -- %s\n", strings.TrimPrefix(k, "words:"))
		}
		b.WriteString("            ;;\n")
	}
	b.WriteString(zshTail)
	return b.String()
}

// fishCompletion is urfave/cli's fish script for the app, completing only what it lists,
// plus the words for `completion`'s argument and the values of the flags of tree that
// take files, folders or known words.
func (a *app) fishCompletion(tree []compNode) (string, error) {
	s, err := a.cliApp().ToFishCompletion()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(s)
	b.WriteString("\n# No file names but where a flag takes one.\ncomplete -c mobikevpn -f\n")
	fmt.Fprintf(&b, "complete -c mobikevpn -n '__fish_mobikevpn_no_subcommand' -f -a help -d %s\n", shQuote(helpUsage))
	fmt.Fprintf(&b, "complete -c mobikevpn -n '__fish_seen_subcommand_from completion' -f -a %s\n", shQuote(strings.Join(shells, " ")))
	kinds, flags := valueCases(tree)
	for _, k := range kinds {
		for _, f := range flags[k] {
			opt := "-l " + strings.TrimPrefix(f, "--")
			if !strings.HasPrefix(f, "--") {
				opt = "-s " + strings.TrimPrefix(f, "-")
			}
			switch k {
			case "files":
				fmt.Fprintf(&b, "complete -c mobikevpn %s -r -F\n", opt)
			case "dirs":
				fmt.Fprintf(&b, "complete -c mobikevpn %s -x -a '(__fish_complete_directories (commandline -ct))'\n", opt)
			default:
				fmt.Fprintf(&b, "complete -c mobikevpn %s -x -a %s\n", opt, shQuote(strings.TrimPrefix(k, "words:")))
			}
		}
	}
	return b.String(), nil
}
