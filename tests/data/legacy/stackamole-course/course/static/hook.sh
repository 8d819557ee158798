#!/bin/sh
# stackamole ran this on suspend and resume with the event as its argument.
logger "lab $1"
