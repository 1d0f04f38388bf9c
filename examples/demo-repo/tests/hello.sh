#!/bin/sh
. ./greet.sh
[ "$(hello World)" = "Hello, World!" ]
