# fish completion for tokctl, tokd's client.
# Installed as /usr/share/fish/vendor_completions.d/tokctl.fish.

set -l commands get status refresh forget import git-credential kubectl-credential docker-credential exec help

# __tokctl_profiles prints the profiles the caller may see, asking the
# daemon through the same --socket, if one was given.
function __tokctl_profiles
    set -l socket
    set -l tokens (commandline -opc)
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case --socket -socket
                set socket --socket $tokens[(math $i + 1)]
            case '--socket=*' '-socket=*'
                set socket --socket (string split -m1 = -- $tokens[$i])[2]
        end
    end
    tokctl $socket status --json 2>/dev/null | string replace -rf '^\s*"profile":\s*"([^"]*)".*' '$1'
end

# __tokctl_nargs prints how many positional arguments follow the subcommand.
function __tokctl_nargs
    set -l tokens (commandline -opc)
    set -l n 0
    set -l seen 0
    set -l skip 0
    for t in $tokens[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $t
            case --socket -socket --env -env
                set skip 1
            case --
                break
            case '-*'
            case '*'
                if test $seen -eq 1
                    set n (math $n + 1)
                else
                    set seen 1
                end
        end
    end
    echo $n
end

# __tokctl_exec_command completes what follows "tokctl exec PROFILE --"
# as a command line of its own.
function __tokctl_exec_command
    set -l tokens (commandline -opc) (commandline -ct)
    set -l i (contains -i -- -- $tokens)
    set -l rest $tokens[(math $i + 1)..-1]
    complete -C "$rest"
end

complete -c tokctl -f
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -l socket -r -F -d "path of tokd's socket"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -l help -d "show usage"

complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a get -d "print a profile's access token"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a status -d "show every profile you may see"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a refresh -d "refresh a token now"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a forget -d "drop a token; the next get fetches anew"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a import -d "import a tokens<n>.tok file"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a git-credential -d "act as a git credential helper"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a kubectl-credential -d "print a kubectl ExecCredential"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a docker-credential -d "act as a docker credential helper"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a exec -d "run a command with a token in its environment"
complete -c tokctl -n "not __fish_seen_subcommand_from $commands" -a help -d "show usage"

complete -c tokctl -n "__fish_seen_subcommand_from get" -l json -d "print the token as JSON"
complete -c tokctl -n "__fish_seen_subcommand_from get" -l header -d "print an Authorization header line"
complete -c tokctl -n "__fish_seen_subcommand_from status" -l json -d "print the status as JSON"
complete -c tokctl -n "__fish_seen_subcommand_from exec; and not contains -- -- (commandline -opc); and test (__tokctl_nargs) -eq 0" -l env -x -d "environment variable for the token (default TOKD_ACCESS_TOKEN)"
complete -c tokctl -n "__fish_seen_subcommand_from get refresh forget import kubectl-credential exec; and test (__tokctl_nargs) -eq 0" -a "(__tokctl_profiles)" -d profile
complete -c tokctl -n "__fish_seen_subcommand_from import; and test (__tokctl_nargs) -eq 1" -F
complete -c tokctl -n "__fish_seen_subcommand_from git-credential; and test (__tokctl_nargs) -eq 0" -a "get store erase"
complete -c tokctl -n "__fish_seen_subcommand_from docker-credential; and test (__tokctl_nargs) -eq 0" -a "get list store erase version"
complete -c tokctl -n "__fish_seen_subcommand_from exec; and not contains -- -- (commandline -opc); and test (__tokctl_nargs) -eq 1" -a "--" -d "then the command"
complete -c tokctl -n "__fish_seen_subcommand_from exec; and contains -- -- (commandline -opc)" -a "(__tokctl_exec_command)"
