"""SPiRL on gymnasium-robotics' FetchReach-v4 through ``env.name: gymnasium`` (README "Your own environment")."""
