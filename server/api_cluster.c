/* GET /v1/cluster: the instances of the cluster, which partitions each owns and how fresh their
 * leases are, as Redis knows it (cluster.h cluster_describe), plus this instance's own view of
 * what it consumes (`owned_here`), which can trail Redis by one lease tick during a hand-over.
 * In single-instance mode (cluster_partitions = 0) it describes this instance alone without
 * asking Redis. */
#include "api.h"
#include "api_params.h"
#include "cluster.h"
#include "rpool.h"

void api_cluster_get(const struct http_request *req, struct http_response *resp)
{
    const struct cluster *c = pipeline_cluster(req->app->pipeline);
    struct rconn *rc = NULL;
    if (c != NULL) {
        rc = api_redis_borrow(req, resp);
        if (rc == NULL)
            return;
    }
    bool down = false;
    json_t *body = cluster_describe(rc, req->app->cfg, c, &down);
    if (rc != NULL)
        rpool_put(req->app->redis, rc);
    if (body == NULL) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "Redis is unavailable", req->path);
        return;
    }
    json_t *owned = json_array();
    for (uint32_t k = 0; c != NULL && k < cluster_partitions(c); k++)
        if (cluster_owns(c, k))
            json_array_append_new(owned, json_integer(k));
    json_object_set_new(body, "owned_here", owned);
    http_json_response(resp, 200, body);
}
