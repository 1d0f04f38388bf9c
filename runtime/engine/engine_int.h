/*
 * engine_int.h - engine-internal shorthands for the generated protobuf-c
 * names, which are long enough to hide the logic they take part in.
 */
#ifndef JORCH_ENGINE_INT_H
#define JORCH_ENGINE_INT_H

#include "temporal/api/command/v1/message.pb-c.h"
#include "temporal/api/failure/v1/message.pb-c.h"
#include "temporal/api/history/v1/message.pb-c.h"

typedef Temporal__Api__History__V1__HistoryEvent HistoryEvent;
typedef Temporal__Api__Command__V1__Command Command;
typedef Temporal__Api__Common__V1__Payload Payload;
typedef Temporal__Api__Common__V1__Payloads Payloads;
typedef Temporal__Api__Failure__V1__Failure Failure;

#define ET(x) TEMPORAL__API__ENUMS__V1__EVENT_TYPE__EVENT_TYPE_##x
#define CT(x) TEMPORAL__API__ENUMS__V1__COMMAND_TYPE__COMMAND_TYPE_##x
#define CMD_ATTR(x) TEMPORAL__API__COMMAND__V1__COMMAND__ATTRIBUTES_##x##_COMMAND_ATTRIBUTES
#define EV_ATTR(x) TEMPORAL__API__HISTORY__V1__HISTORY_EVENT__ATTRIBUTES_##x##_EVENT_ATTRIBUTES
#define FAILURE_INFO(x) TEMPORAL__API__FAILURE__V1__FAILURE__FAILURE_INFO_##x##_FAILURE_INFO

#endif
