/* REST handlers (server/api_*.c), one file per resource; the route table (route.c) is their only
 * caller. Each fills the response from the request and returns; none blocks on anything but the
 * store. Shared parameter parsing and list/get replies live in api_params.h. Thread-safe: they
 * run concurrently on HTTP worker threads and keep no state. */
#ifndef AETHERIS_API_H
#define AETHERIS_API_H
#include "fmacros.h"
#include "http.h"

void api_healthz(const struct http_request *req, struct http_response *resp);
void api_readyz(const struct http_request *req, struct http_response *resp);
void api_health(const struct http_request *req, struct http_response *resp);
void api_anomalies_list(const struct http_request *req, struct http_response *resp);
void api_anomalies_get(const struct http_request *req, struct http_response *resp);
void api_decisions_list(const struct http_request *req, struct http_response *resp);
void api_decisions_get(const struct http_request *req, struct http_response *resp);
void api_deadletter_list(const struct http_request *req, struct http_response *resp);
void api_events_post(const struct http_request *req, struct http_response *resp);
void api_queues_list(const struct http_request *req, struct http_response *resp);
void api_queues_get(const struct http_request *req, struct http_response *resp);
void api_cluster_get(const struct http_request *req, struct http_response *resp);
void api_accounts_get(const struct http_request *req, struct http_response *resp);
void api_stream(const struct http_request *req, struct http_response *resp);
void api_openapi_json(const struct http_request *req, struct http_response *resp);
void api_openapi_yaml(const struct http_request *req, struct http_response *resp);
void api_metrics_json(const struct http_request *req, struct http_response *resp);
void api_metrics_prometheus(const struct http_request *req, struct http_response *resp);
void api_webhooks_list(const struct http_request *req, struct http_response *resp);
void api_webhooks_create(const struct http_request *req, struct http_response *resp);
void api_webhooks_get(const struct http_request *req, struct http_response *resp);
void api_webhooks_patch(const struct http_request *req, struct http_response *resp);
void api_webhooks_delete(const struct http_request *req, struct http_response *resp);
void api_webhooks_test(const struct http_request *req, struct http_response *resp);
void api_webhooks_rotate(const struct http_request *req, struct http_response *resp);
void api_webhooks_deliveries(const struct http_request *req, struct http_response *resp);

#endif
