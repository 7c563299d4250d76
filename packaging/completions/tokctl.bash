# bash completion for tokctl, tokd's client.                -*- shell-script -*-
# Installed as /usr/share/bash-completion/completions/tokctl.

# _tokctl_profiles prints the profiles the caller may see, asking the
# daemon (through the same --socket, if one was given).
_tokctl_profiles()
{
    local socket=$1
    tokctl ${socket:+--socket "$socket"} status --json 2>/dev/null |
        sed -n 's/^ *"profile": *"\([^"]*\)".*/\1/p'
}

_tokctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="get status refresh forget import git-credential kubectl-credential docker-credential exec help"
    local i word cmd="" cmdi=0 socket=""

    # Find the subcommand: the first word that is neither a global flag
    # nor its argument.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case $word in
        --socket | -socket)
            # COMP_WORDBREAKS splits --socket=PATH into three words.
            ((i++))
            [[ ${COMP_WORDS[i]} == = ]] && ((i++))
            socket=${COMP_WORDS[i]}
            ;;
        --socket=* | -socket=*) socket=${word#*=} ;;
        -*) ;;
        *) cmd=$word; cmdi=$i; break ;;
        esac
    done

    if [[ -z $cmd ]]; then
        case $prev in
        --socket | -socket | =)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--socket --help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    # Positional arguments after the subcommand; flags, and the value
    # of exec's --env, not counted.
    local npos=0
    for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --) break ;;
        --env | -env) ((i++)) ;;
        -*) ;;
        *) ((npos++)) ;;
        esac
    done

    case $cmd in
    get)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--json --header" -- "$cur"))
        elif ((npos == 0)); then
            COMPREPLY=($(compgen -W "$(_tokctl_profiles "$socket")" -- "$cur"))
        fi
        ;;
    status)
        COMPREPLY=($(compgen -W "--json" -- "$cur"))
        ;;
    refresh | forget | kubectl-credential)
        ((npos == 0)) && COMPREPLY=($(compgen -W "$(_tokctl_profiles "$socket")" -- "$cur"))
        ;;
    import)
        if ((npos == 0)); then
            COMPREPLY=($(compgen -W "$(_tokctl_profiles "$socket")" -- "$cur"))
        elif ((npos == 1)); then
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        ;;
    git-credential)
        ((npos == 0)) && COMPREPLY=($(compgen -W "get store erase" -- "$cur"))
        ;;
    docker-credential)
        ((npos == 0)) && COMPREPLY=($(compgen -W "get list store erase version" -- "$cur"))
        ;;
    exec)
        # tokctl exec [--env NAME] PROFILE -- COMMAND ARGS...
        local dashdash=0
        for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
            if [[ ${COMP_WORDS[i]} == -- ]]; then
                dashdash=$i
                break
            fi
        done
        if ((dashdash > 0)); then
            if ((dashdash == COMP_CWORD - 1)); then
                COMPREPLY=($(compgen -c -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi
        elif [[ $prev == --env || $prev == -env ]]; then
            COMPREPLY=()
        elif [[ $cur == -* ]] && ((npos == 0)); then
            COMPREPLY=($(compgen -W "--env" -- "$cur"))
        elif ((npos == 0)); then
            COMPREPLY=($(compgen -W "$(_tokctl_profiles "$socket")" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--" -- "$cur"))
        fi
        ;;
    esac
}

complete -F _tokctl tokctl
