#!/bin/sh
# greet.sh - the demo repository's "product": a tiny greeter library.
# Source it (. ./greet.sh) and call hello NAME.

hello() {
    printf 'Hello, %s!\n' "$1"
}
