"""bc-connector: the Azure Functions app. Wiring only; each feature's triggers live in its folder."""
import azure.functions as func

from connector.auth import blueprint as auth
from connector.businessevents import blueprint as businessevents
from connector.fanout import blueprint as fanout
from connector.health import blueprint as health
from connector.items import blueprint as items
from connector.ops import blueprint as ops
from connector.orders import blueprint as orders
from connector.webhooks import blueprint as webhooks

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(ops.bp)
app.register_functions(orders.bp)
app.register_functions(items.bp)
app.register_functions(auth.bp)
app.register_functions(webhooks.bp)
app.register_functions(businessevents.bp)
app.register_functions(health.bp)
app.register_functions(fanout.bp)
