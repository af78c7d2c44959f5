"""Launch the mosaico_bridge lifecycle node.

    ros2 launch mosaico_bridge bridge.launch.py [params_file:=...] [namespace:=robot1] [autostart:=true]

With ``autostart`` the node is configured, then activated, through lifecycle events
(a failed configure stops there: the node stays unconfigured and logs why). Without
it, drive the node with ``ros2 lifecycle set`` or nav2's lifecycle_manager (see the
README, "Running under a lifecycle manager").
"""

import os

import launch.actions
import launch.conditions
import launch.events
import launch.substitutions
import launch_ros.actions
import launch_ros.event_handlers
import launch_ros.events.lifecycle
from ament_index_python.packages import get_package_share_directory
from lifecycle_msgs.msg import Transition

import launch


def generate_launch_description() -> launch.LaunchDescription:
    default_params = os.path.join(get_package_share_directory("mosaico_bridge"), "config", "bridge.yaml")
    params_file = launch.substitutions.LaunchConfiguration("params_file")
    namespace = launch.substitutions.LaunchConfiguration("namespace")
    autostart = launch.substitutions.LaunchConfiguration("autostart")

    bridge = launch_ros.actions.LifecycleNode(
        package="mosaico_bridge",
        executable="bridge_node",
        name="mosaico_bridge",
        namespace=namespace,
        parameters=[params_file],
        output="screen",
    )
    is_bridge = launch.events.matches_action(bridge)
    configure = launch.actions.EmitEvent(
        event=launch_ros.events.lifecycle.ChangeState(
            lifecycle_node_matcher=is_bridge, transition_id=Transition.TRANSITION_CONFIGURE
        ),
        condition=launch.conditions.IfCondition(autostart),
    )
    activate_when_configured = launch.actions.RegisterEventHandler(
        launch_ros.event_handlers.OnStateTransition(
            target_lifecycle_node=bridge,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                launch.actions.LogInfo(msg="mosaico_bridge configured: activating"),
                launch.actions.EmitEvent(
                    event=launch_ros.events.lifecycle.ChangeState(
                        lifecycle_node_matcher=is_bridge, transition_id=Transition.TRANSITION_ACTIVATE
                    )
                ),
            ],
        ),
        condition=launch.conditions.IfCondition(autostart),
    )
    return launch.LaunchDescription(
        [
            launch.actions.DeclareLaunchArgument(
                "params_file", default_value=default_params, description="YAML file with the node's parameters"
            ),
            launch.actions.DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
            launch.actions.DeclareLaunchArgument(
                "autostart", default_value="true", description="Configure then activate the node at launch"
            ),
            bridge,
            activate_when_configured,
            configure,
        ]
    )
